"""A batch of credit-control requests on its way through the application
(`CreditControlApplication.process`), and what comes out of it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..diameter.message import Frames, Header, parse_header
from ..store.records import Debit, JournalRecord, NewSession
from .ccr import CreditControlRequest


@dataclass
class BatchResult:
    answers: list[bytes]          # one per request, in order
    record: JournalRecord | None  # the journal record; None if nothing changed
    results: list[int]            # top-level Result-Code per request (for metrics)
    events: np.ndarray | None = None   # thresholds crossed (EVENT rows), announced once durable
    types: np.ndarray | None = None    # CC-Request-Type per request (metrics); 0 when unreadable
    units: np.ndarray | None = None    # the charged MSCC rows, after the engine (metrics)
    opened: list | None = None         # (request index, session row) of the sessions this batch opened


@dataclass(eq=False)
class Batch:
    """One batch on its way through the stages of `process`: what was
    decoded, what each request has become so far, and what the journal
    record will hold. Index i is the i-th request of the batch throughout."""
    frames: Frames
    now: float
    buf: np.ndarray               # the batch's bytes, as the compiled decoder read them
    fr: np.ndarray                # FRAME rows (fastccr): one per request
    msccs: np.ndarray             # MSCC rows of the fast path (more are added for the full one)
    used_rows: int                # MSCC rows the fast path filled
    answers: list                 # bytes once answered
    results: list[int]            # top-level Result-Code once answered
    hbhs: list[int]
    e2es: list[int]
    dedup_keys: list[bytes]       # Origin-Host + End-to-End-Identifier
    fps: np.ndarray | None        # their fingerprints (None once a full decode replaced a key)
    req_sub: np.ndarray           # subscriber row, -1 until resolved
    req_sess: np.ndarray          # session row, -1 until resolved
    slow: dict[int, CreditControlRequest] = field(default_factory=dict)   # the full decoder's requests
    charged: list[int] = field(default_factory=list)      # requests the engine charges
    copies: list[tuple[int, int]] = field(default_factory=list)   # (request, the same request earlier)
    new_sessions: list[NewSession] = field(default_factory=list)   # sessions opened
    new_subs: list[int] = field(default_factory=list)     # ... and their subscribers
    opened: list[tuple[int, int]] = field(default_factory=list)   # (request, session row) opened
    reopened: set[int] = field(default_factory=set)       # CCR-I for a session this host has open
    refunds: list[int] = field(default_factory=list)      # REFUND_ACCOUNT requests (answered by _refund)
    moved: list[int] = field(default_factory=list)        # subscriber rows a refund changed
    debits: list[Debit] = field(default_factory=list)     # debits made or refunded, for the record
    numbers: tuple = ()           # (session rows, CC-Request-Numbers) of what is charged
    units: np.ndarray | None = None   # the charged MSCC rows after the engine
    dirty_subs: np.ndarray | None = None  # subscriber rows the engine changed
    dirty_sess: np.ndarray | None = None  # session rows the engine changed
    sponsored: bool = False       # a sponsor's account changed
    record: JournalRecord | None = None
    events: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.fr)

    def answer(self, i: int, answer: bytes, result: int) -> None:
        self.answers[i], self.results[i] = answer, result

    def header(self, i: int) -> Header:
        return self.slow[i].header if i in self.slow else parse_header(self.frames[i])

    def types(self) -> np.ndarray:
        """CC-Request-Type per request (0: unreadable), for metrics."""
        types = np.where(self.fr["fallback"] == 0, self.fr["type"], 0)
        for i, ccr in self.slow.items():
            types[i] = ccr.request_type
        return types

    def result(self) -> BatchResult:
        return BatchResult(self.answers, self.record, self.results, self.events, self.types(), self.units,
                           self.opened)


def unit_rows(reqs, sel) -> tuple[np.ndarray, np.ndarray]:
    """(request, MSCC row) of every MSCC of the requests `sel`."""
    counts = reqs["mscc_count"][sel]
    req_of = np.repeat(sel, counts)
    first = np.cumsum(counts) - counts
    rows = np.repeat(reqs["mscc_start"][sel], counts) + np.arange(counts.sum()) - np.repeat(first, counts)
    return req_of, rows
