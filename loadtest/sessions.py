"""Simulated PGW credit-control sessions, one per window slot (compiled).

A window of W outstanding requests is W slots. Each slot runs Gy sessions
back to back (RFC 4006 section 7, client side): CCR-Initial, then up to N
CCR-Updates each reporting octets used out of the last grant (never more),
then CCR-Terminate; then a new session for the next subscriber. A slot has
at most one request in flight, as a real PGW has per session.

The hop-by-hop id of a request is (generation << slot_bits) | slot, so an
answer finds its slot with a mask and a late answer (after a timeout, when
the slot has moved on) does not match the generation it carries.

`step` takes everything received since the last call, checks and accounts
every Credit-Control-Answer, hands other messages (DWR, DPR, ...) back to
Python, and writes the next CCR of every slot that is ready into one output
buffer for a single send. All state is numpy arrays so the loop never
allocates.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import codec
from .codec import (F_FLAGS, F_GSU_OCTETS, F_HBH, F_MALFORMED, F_MSCC_RESULT,
                    F_REQNO, F_RESULT, F_SID_LEN, F_SID_OFF, INITIAL, N_FIELDS,
                    TERMINATE, UPDATE)
from .histogram import record

# Columns of the per-slot state table.
S_MSISDN, S_SESSION, S_REQNO, S_KIND, S_UPDATES_LEFT, S_USED, S_SENT_NS, S_HBH, \
    S_GENERATION, S_OUTSTANDING, N_SLOT_COLS = range(11)

# Run statistics (reset when warm-up ends).
(ANSWERED, SENT, CHECK_FAILED, FAIL_SESSION_ID, FAIL_REQUEST_NUMBER,
 FAIL_RESULT_CODE, FAIL_COMMAND, MALFORMED, UNMATCHED, TIMEOUTS,
 SESSIONS_STARTED, SESSIONS_COMPLETED, REFUSED, ZERO_GRANTS, OCTETS_GRANTED,
 OCTETS_REPORTED, MAX_LATENCY_NS, N_STATS) = range(18)
STAT_NAMES = ("answered", "sent", "check_failed", "fail_session_id",
              "fail_request_number", "fail_result_code", "fail_command",
              "malformed", "unmatched", "timeouts", "sessions_started",
              "sessions_completed", "refused", "zero_grants", "octets_granted",
              "octets_reported", "max_latency_ns")

# Sequence counters (never reset) and parameters.
Q_NEXT_SESSION, Q_NEXT_SUBSCRIBER, Q_NEXT_E2E, Q_READY, N_SEQ = range(5)
(P_SLOT_BITS, P_MSISDN_LO, P_MSISDN_COUNT, P_MSISDN_DIGITS, P_UPDATES,
 P_USE_PERCENT, P_RATING_GROUP, P_RELAXED, P_E2E_BASE, N_PARAMS) = range(10)

N_RESULT_CODES = 6000  # result_counts[0] counts answers without a Result-Code


class Generator:
    """Arrays of a run; the kernels below do the work."""

    def __init__(self, window: int, templates: codec.CcrTemplates, msisdn_lo: int,
                 msisdn_count: int, updates: int, use_percent: int, rating_group: int,
                 relaxed: bool, expected_results=(2001,), e2e_base: int = 0,
                 first_session: int = 0):
        self.window = window
        self.templates = templates
        self.slots = np.zeros((window, N_SLOT_COLS), np.int64)
        self.ready = np.zeros(window, np.int64)
        self.seq = np.zeros(N_SEQ, np.int64)
        self.seq[Q_NEXT_SESSION] = first_session
        self.stats = np.zeros(N_STATS, np.int64)
        self.results = np.zeros(N_RESULT_CODES, np.int64)
        self.hist = np.zeros(0, np.int64)
        self.params = np.zeros(N_PARAMS, np.int64)
        self.params[:] = [max(1, (window - 1).bit_length()), msisdn_lo, msisdn_count,
                          templates.msisdn_digits, updates, use_percent, rating_group,
                          int(relaxed), e2e_base]
        self.expected = np.zeros(N_RESULT_CODES, np.bool_)
        self.expected[list(expected_results)] = True
        self.sid_prefix = np.frombuffer(templates.sid_prefix, np.uint8).copy()
        self.out = np.zeros(window * int(templates.lengths.max()), np.uint8)
        self.other = np.zeros(1024, np.int64)  # offsets of non-CCA frames
        self.fields = np.zeros(N_FIELDS, np.int64)
        for slot in range(window):
            _new_session(self.slots, slot, self.ready, self.seq, self.stats, self.params)

    def bind_histogram(self, counts: np.ndarray) -> None:
        self.hist = counts

    def compile(self) -> None:
        """Compile (or load from numba's cache) the kernels before connecting."""
        self.step(np.zeros(codec.HEADER_LEN, np.uint8), 0, 0, False)
        self.expire(0, 1 << 62)

    def step(self, rx: np.ndarray, size: int, now_ns: int, sending: bool):
        """(bytes consumed, non-CCA frame count, bytes to send from self.out)."""
        return _step(rx, size, now_ns, sending, self.slots, self.ready, self.seq,
                     self.stats, self.results, self.hist, self.params, self.expected,
                     self.sid_prefix, self.templates.bytes, self.templates.lengths,
                     self.templates.offsets, self.out, self.other, self.fields)

    def expire(self, now_ns: int, timeout_ns: int) -> int:
        return _expire(now_ns, timeout_ns, self.slots, self.ready, self.seq,
                       self.stats, self.params)

    @property
    def outstanding(self) -> int:
        return int(self.slots[:, S_OUTSTANDING].sum())


@njit(cache=True)
def _new_session(slots, s, ready, seq, stats, params):
    slots[s, S_SESSION] = seq[Q_NEXT_SESSION]
    seq[Q_NEXT_SESSION] += 1
    slots[s, S_MSISDN] = params[P_MSISDN_LO] + seq[Q_NEXT_SUBSCRIBER] % params[P_MSISDN_COUNT]
    seq[Q_NEXT_SUBSCRIBER] += 1
    slots[s, S_REQNO] = 0
    slots[s, S_KIND] = INITIAL
    slots[s, S_UPDATES_LEFT] = params[P_UPDATES]
    slots[s, S_USED] = 0
    stats[SESSIONS_STARTED] += 1
    ready[seq[Q_READY]] = s
    seq[Q_READY] += 1


@njit(cache=True)
def _session_id_matches(rx, f, sid_prefix, session_no):
    n = len(sid_prefix)
    if f[F_SID_OFF] < 0 or f[F_SID_LEN] != n + codec.SID_DIGITS:
        return False
    at = f[F_SID_OFF]
    for i in range(n):
        if rx[at + i] != sid_prefix[i]:
            return False
    for i in range(n + codec.SID_DIGITS - 1, n - 1, -1):
        if rx[at + i] != 48 + session_no % 10:
            return False
        session_no //= 10
    return True


@njit(cache=True)
def _on_answer(rx, f, now_ns, slots, ready, seq, stats, results, hist, params,
               expected, sid_prefix):
    s = f[F_HBH] & ((1 << params[P_SLOT_BITS]) - 1)
    if s >= len(slots) or not slots[s, S_OUTSTANDING] or slots[s, S_HBH] != f[F_HBH]:
        stats[UNMATCHED] += 1
        return
    slots[s, S_OUTSTANDING] = 0
    latency = now_ns - slots[s, S_SENT_NS]
    record(hist, latency)
    stats[MAX_LATENCY_NS] = max(stats[MAX_LATENCY_NS], latency)
    stats[ANSWERED] += 1
    code = f[F_RESULT]
    results[min(max(code, 0), N_RESULT_CODES - 1)] += 1
    relaxed = params[P_RELAXED] != 0
    failure = -1
    if f[F_MALFORMED]:
        failure = MALFORMED
    elif not relaxed:
        mscc_code = f[F_MSCC_RESULT]
        if not _session_id_matches(rx, f, sid_prefix, slots[s, S_SESSION]):
            failure = FAIL_SESSION_ID
        elif f[F_REQNO] != slots[s, S_REQNO]:
            failure = FAIL_REQUEST_NUMBER
        elif not (0 < code < N_RESULT_CODES and expected[code]):
            failure = FAIL_RESULT_CODE
        elif not (mscc_code < 0 or (mscc_code < N_RESULT_CODES and expected[mscc_code])):
            failure = FAIL_RESULT_CODE
    if failure >= 0:
        stats[failure] += 1
        stats[CHECK_FAILED] += 1
        _new_session(slots, s, ready, seq, stats, params)
        return
    kind = slots[s, S_KIND]
    if kind == TERMINATE:
        stats[SESSIONS_COMPLETED] += 1
        _new_session(slots, s, ready, seq, stats, params)
        return
    mscc_ok = f[F_MSCC_RESULT] < 0 or f[F_MSCC_RESULT] == codec.DIAMETER_SUCCESS
    granted = relaxed or (code == codec.DIAMETER_SUCCESS and mscc_ok)
    if not granted and kind == INITIAL:
        stats[REFUSED] += 1
        _new_session(slots, s, ready, seq, stats, params)
        return
    octets = max(f[F_GSU_OCTETS], 0) if granted else 0
    stats[OCTETS_GRANTED] += octets
    slots[s, S_USED] = octets * params[P_USE_PERCENT] // 100
    if not granted:
        stats[REFUSED] += 1
        slots[s, S_KIND] = TERMINATE
    elif octets == 0 and not relaxed:
        stats[ZERO_GRANTS] += 1
        slots[s, S_KIND] = TERMINATE
    elif slots[s, S_UPDATES_LEFT] > 0:
        slots[s, S_UPDATES_LEFT] -= 1
        slots[s, S_KIND] = UPDATE
    else:
        slots[s, S_KIND] = TERMINATE
    slots[s, S_REQNO] += 1
    ready[seq[Q_READY]] = s
    seq[Q_READY] += 1


@njit(cache=True)
def _step(rx, size, now_ns, sending, slots, ready, seq, stats, results, hist, params,
          expected, sid_prefix, tmpl, lengths, offsets, out, other, f):
    pos = 0
    n_other = 0
    while pos + codec.HEADER_LEN <= size:
        length = codec._u24(rx, pos + 1)
        if rx[pos] != 1 or length < codec.HEADER_LEN or length % 4:
            return -1, n_other, 0  # not Diameter: the caller drops the connection
        if pos + length > size:
            break
        flags = rx[pos + 4]
        if codec._u24(rx, pos + 5) != codec.CMD_CREDIT_CONTROL or flags & codec.FLAG_REQUEST:
            if n_other < len(other):
                other[n_other] = pos
                n_other += 1
        else:
            codec.read_answer(rx, pos, pos + length, params[P_RATING_GROUP], f)
            f[F_FLAGS] = flags
            _on_answer(rx, f, now_ns, slots, ready, seq, stats, results, hist, params,
                       expected, sid_prefix)
        pos += length
    written = 0
    if sending:
        written = _emit(now_ns, slots, ready, seq, stats, params, tmpl, lengths,
                        offsets, out)
    return pos, n_other, written


@njit(cache=True)
def _emit(now_ns, slots, ready, seq, stats, params, tmpl, lengths, offsets, out):
    pos = 0
    for i in range(seq[Q_READY]):
        s = ready[i]
        gen = slots[s, S_GENERATION] + 1
        slots[s, S_GENERATION] = gen
        hbh = ((gen << params[P_SLOT_BITS]) | s) & 0xFFFFFFFF
        e2e = (params[P_E2E_BASE] + seq[Q_NEXT_E2E]) & 0xFFFFFFFF
        seq[Q_NEXT_E2E] += 1
        kind = slots[s, S_KIND]
        pos = codec.fill_ccr(out, pos, tmpl, lengths, offsets, params[P_MSISDN_DIGITS],
                             kind, slots[s, S_SESSION], slots[s, S_MSISDN],
                             slots[s, S_REQNO], slots[s, S_USED], hbh, e2e)
        slots[s, S_HBH] = hbh
        slots[s, S_SENT_NS] = now_ns
        slots[s, S_OUTSTANDING] = 1
        stats[SENT] += 1
        if kind != INITIAL:
            stats[OCTETS_REPORTED] += slots[s, S_USED]
    seq[Q_READY] = 0
    return pos


@njit(cache=True)
def _expire(now_ns, timeout_ns, slots, ready, seq, stats, params):
    """Give up on requests older than timeout_ns; their slots start afresh."""
    expired = 0
    for s in range(len(slots)):
        if slots[s, S_OUTSTANDING] and now_ns - slots[s, S_SENT_NS] > timeout_ns:
            slots[s, S_OUTSTANDING] = 0
            stats[TIMEOUTS] += 1
            expired += 1
            _new_session(slots, s, ready, seq, stats, params)
    return expired
