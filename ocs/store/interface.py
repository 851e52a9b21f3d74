"""The Store: what the charging loop, the operators' operations, the API
and the CLI need of authoritative state, and nothing more. The embedded
store (`embedded.py`: arrays, a journal, snapshots) implements it; the
cluster store (slot leases on PostgreSQL) is the second implementation and
must need nothing outside this protocol (tests/store/test_interface.py
holds every use of a store in `ocs/` to it).

The shape (docs/architecture.md, "The Store"): the single writer charges in
memory, over the record arrays below, with the engine's kernels; a store
1. opens: recovers those arrays (a snapshot and the journal after it, or
   the slots it owns) and replays the records it holds;
2. looks up in bulk: subscriber keys to rows, Session-Ids to session rows,
   answers of the duplicate cache, sessions released within the grace;
3. builds each batch's effects into one journal record (`record`: the new
   values of the rows the batch changed, new sessions, the answers, usage
   rows, debits), so replaying it twice changes nothing;
4. makes records durable (`write`), all of them or none, before any answer
   of theirs leaves: a failure raises OSError and nothing is acknowledged;
5. snapshots, so recovery stays short (`begin_snapshot` captures on the
   loop and returns the slow part to run in a thread).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

import numpy as np

from .records import Debit, ExpiredSession, JournalRecord


@runtime_checkable
class Store(Protocol):
    # ---- the state the kernels charge (engine/tables.py dtypes), one writer
    subs: np.ndarray              # SUBSCRIBER rows: accounts, their buckets, money and counters
    n_subs: int                   # rows in use
    sessions: np.ndarray          # SESSION rows: open credit-control sessions and their reservations
    session_index: dict[bytes, int]                   # Session-Id -> session row
    session_meta: list[tuple[bytes, bytes] | None]    # session row -> (Session-Id, Origin-Host that opened it)
    sponsors: np.ndarray          # SPONSOR rows: one account per sponsor contract
    sponsor_ids: list[str]
    explicit: dict[int, int]      # subscriber key -> row, of subscribers listed one by one
    ranges: list[tuple[int, int, int, int, int]]      # number ranges: (type, digits, first, last, base row)
    retired: set[int]             # rows of deleted subscribers (never reused)
    profiles: dict[int, Any]      # row -> what the operator set through the API (profiles.Profile)
    debits: dict[bytes, Debit]    # refundable direct debits, by Refund-Information
    expired: dict[bytes, ExpiredSession]              # released sessions whose late reports are charged
    session_grace: float          # ... for this many seconds
    rules_version: str            # the rules version the rows are indexed by
    seq: int                      # the last journal record applied
    dir: Path                     # where the node keeps its files (rules versions, usage records)

    # ---- life
    def open(self, readonly: bool = False, on_rules: Callable[[str, float], Any] | None = None) -> None:
        """Recover the state; `on_rules(version, t)` for each rules version met on the way."""

    def close(self) -> None: ...

    # ---- lookups, in bulk where the hot path needs them
    def lookup(self, key: int) -> int:
        """Subscriber key (ocs.rules.compile.subscriber_key) -> row, or -1."""

    def lookup_many(self, keys: np.ndarray) -> np.ndarray: ...

    def label(self, row: int) -> str:
        """The identity a row is known by (its MSISDN or IMSI)."""

    def answers_for(self, keys: list[bytes], now: float, fps: np.ndarray | None = None) -> list[bytes | None]:
        """The duplicate cache (Origin-Host + End-to-End-Identifier -> answer), in bulk."""

    def answer_for(self, key: bytes, now: float) -> bytes | None: ...

    def expired_session(self, sid: bytes, now: float) -> ExpiredSession | None: ...

    @property
    def duplicate_cache_bytes(self) -> int:
        """Memory the duplicate cache holds (a metric)."""

    @property
    def unavailable(self) -> str | None:
        """Why this node charges nothing now (a cluster node holding no
        slots, or whose lease lapsed); None: it charges."""

    def adopt(self) -> bool:
        """On the loop, between batches: apply what the store took over
        (slots of a node that left); True if any."""

    fenced: str | None            # why this process may never write again (another node fenced it out)

    relay_target: tuple[str, int] | None   # HOST, PORT of the node requests go to instead (cluster store)

    api_target: str | None                 # http://HOST:PORT of the API operator requests go to instead

    def advertise(self, address: str, api: str | None = None) -> None:
        """The HOST:PORT this node serves Diameter at, and its API, for the others."""

    def stats(self) -> dict[str, tuple[str, float]]:
        """Figures for /metrics: name -> (help, value); a name ending in _total counts."""
    inline_writes: bool           # a write may be made on the charging loop when it is idle (a local fsync)

    # ---- changes the single writer makes between journal records
    def new_row(self, plan: int, balance: int, anchor: int) -> int: ...

    def change_directory(self, row: int, bind: Iterable[int] = (), unbind: Iterable[int] = (),
                         label: str | None = None, profile: Any = None, drop_profile: bool = False,
                         retire: bool = False) -> dict:
        """Who a row is (keys bound and unbound, label, profile); returns the
        change for the journal record (`record(directory=[...])`)."""

    def sync_rules(self, rules: Any, today: Callable[[int], int]) -> int: ...

    def sync_sponsors(self, ids: list[str]) -> None: ...

    def open_session(self, sid: bytes, host: bytes) -> int: ...

    def start_sessions(self, rows: list[int], subs: list[int]) -> None: ...

    def release_session_row(self, row: int) -> None: ...

    def remember_answers(self, keys: list[bytes], answers: list[bytes], now: float,
                         fps: np.ndarray | None = None) -> None: ...

    def keep_expired(self, sessions: list[ExpiredSession]) -> None: ...

    def forget_expired(self, now: float) -> None: ...

    def keep_debits(self, debits: list[Debit]) -> None: ...

    # ---- effects made durable
    def record(self, rules_version: str, now: float, dirty_subs: np.ndarray, dirty_sess: np.ndarray,
               new_sessions: list, answered: tuple, usage: bytes, **extra: Any) -> JournalRecord:
        """One journal record of a batch's (or an operation's) effects."""

    def rules_record(self, version: str, now: float) -> JournalRecord: ...

    def write(self, *records: JournalRecord) -> int:
        """Make records durable, all or none (OSError: none is)."""

    @property
    def journal_bytes(self) -> int:
        """How much a recovery would replay now (a snapshot is due past `snapshot_journal_mb`)."""

    def snapshot(self) -> None: ...

    def begin_snapshot(self) -> Callable[[], None] | None:
        """Capture a snapshot now; the returned callable writes it (in a thread)."""

    @property
    def snapshot_unfinished(self) -> bool: ...
