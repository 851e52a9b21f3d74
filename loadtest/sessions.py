"""Simulated PGW credit-control sessions of one gateway (compiled).

A gateway has a fixed number of session slots. Each slot runs Gy sessions
back to back (RFC 4006 section 7, client side): CCR-Initial, then up to N
CCR-Updates, each reporting the octets used out of the grants just received
(never more, unless the profile allows over-use), then CCR-Terminate with
the last usage; then a new session for the next subscriber. A session has
one MSCC per rating group and a slot has at most one request in flight, as
a real PGW has per session. The session's usage profile (CCR-U count, share
of each grant used, number of rating groups) is drawn by weight.

Closed loop: a slot sends as soon as its answer is in, so the number of
slots is the window. Open loop: requests are due at the times of a
`schedule` and each takes the next free slot; a request that finds none
waits, and its latency still runs from when it was due.

The hop-by-hop id of a request is (generation << slot_bits) | slot, so an
answer finds its slot with a mask and a late answer (after a timeout, when
the slot has moved on) does not match the generation it carries.

`Generator.read` takes everything received since the last call, judges and
accounts every Credit-Control-Answer (counters shared by all gateways of a
run) and hands other messages (DWR, DPR, ...) back to Python;
`Generator.emit` writes every request that may go now into one output
buffer for a single send. All state is numpy
arrays so the loop never allocates.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ocs.diameter.constants import CMD_CREDIT_CONTROL

from . import ccr, codec
from .codec import (F_HBH, F_MALFORMED, F_MSCC_COUNT, F_REQNO, F_RESULT, F_SID_LEN,
                    F_SID_OFF, INITIAL, M_GRANTED, M_RATING_GROUP, M_RESULT,
                    MAX_ANSWER_MSCC, N_FIELDS, N_MSCC_COLS, TERMINATE, UPDATE)
from .histogram import record
from .schedule import count_by, intended_ns

SUCCESS = codec.DIAMETER_SUCCESS
NEVER_NS = 1 << 62

# Columns of the per-slot state table.
(S_SESSION, S_MSISDN, S_SUB, S_PROFILE, S_N_RG, S_REQNO, S_KIND, S_UPDATES_LEFT,
 S_OPEN, S_INTENDED_NS, S_SENT_NS, S_HBH, S_E2E, S_GENERATION, S_OUTSTANDING,
 S_RETRANSMIT, N_SLOT_COLS) = range(17)

# Run counters, shared by the gateways of a run and never reset: the run
# takes differences between snapshots.
STAT_NAMES = (
    "sent", "sent_initial", "sent_update", "sent_terminate", "retransmitted",
    "answered", "check_failed", "fail_session_id", "fail_request_number",
    "fail_result_code", "fail_mscc", "fail_over_request", "fail_over_plan",
    "malformed", "unmatched", "timeouts", "timeouts_unsent",
    "sessions_completed", "sessions_abandoned", "refused",
    "zero_grants", "octets_requested", "octets_granted", "octets_reported",
    "max_latency_ns")
(SENT, SENT_INITIAL, SENT_UPDATE, SENT_TERMINATE, RETRANSMITTED, ANSWERED,
 CHECK_FAILED, FAIL_SESSION_ID, FAIL_REQUEST_NUMBER, FAIL_RESULT_CODE, FAIL_MSCC,
 FAIL_OVER_REQUEST, FAIL_OVER_PLAN, MALFORMED, UNMATCHED, TIMEOUTS, TIMEOUTS_UNSENT,
 SESSIONS_COMPLETED, SESSIONS_ABANDONED, REFUSED, ZERO_GRANTS,
 OCTETS_REQUESTED, OCTETS_GRANTED, OCTETS_REPORTED, MAX_LATENCY_NS) = range(len(STAT_NAMES))
N_STATS = len(STAT_NAMES)
N_RESULT_CODES = 6000  # results[0] counts answers without a Result-Code

# Per-gateway sequence counters.
(Q_NEXT_SESSION, Q_NEXT_SUBSCRIBER, Q_NEXT_E2E, Q_READY_HEAD, Q_READY_TAIL,
 Q_NEXT_ARRIVAL, Q_SENT, Q_SEND_LIMIT, Q_OUTSTANDING, Q_RETRANSMITS, Q_NEXT_DUE_NS,
 Q_BLOCKED, N_SEQ) = range(13)
# Parameters.
(P_SLOT_BITS, P_MSISDN_LO, P_MSISDN_COUNT, P_MSISDN_DIGITS, P_RELAXED, P_E2E_BASE,
 P_REQUEST_OCTETS, P_PLAN_OCTETS, P_OPEN_LOOP, P_STRIDE, P_PHASE, P_MAX_RG,
 P_TIMEOUT_NS, P_START_NS, N_PARAMS) = range(15)
# Columns of the usage-profile table.
(PR_CUM_WEIGHT, PR_UPDATES_MIN, PR_UPDATES_MAX, PR_USE_MIN, PR_USE_MAX, PR_RG_MIN,
 PR_RG_MAX, N_PROFILE_COLS) = range(8)


class Counters:
    """What all gateways of a run add to: statistics, result codes, histograms."""

    def __init__(self):
        from .histogram import N_BUCKETS
        self.stats = np.zeros(N_STATS, np.int64)
        self.results = np.zeros(N_RESULT_CODES, np.int64)
        self.latency = np.zeros(N_BUCKETS, np.int64)   # from the intended send time
        self.wire = np.zeros(N_BUCKETS, np.int64)      # from the actual send
        self.interval = np.zeros(N_BUCKETS, np.int64)  # like latency, emptied each second

    def stat(self, name: str) -> int:
        return int(self.stats[STAT_NAMES.index(name)])


class Generator:
    """The session slots of one gateway; the kernels below do the work.

    `profiles` rows are (weight, updates_min, updates_max, use_min_percent,
    use_max_percent, rating_groups_min, rating_groups_max); `rating_groups`
    the ids sessions draw consecutive runs of. `plan_octets` > 0 checks that no subscriber
    ever holds grants beyond it minus what it reported used in this run.
    """

    def __init__(self, slots: int, templates: ccr.CcrTemplates, counters: Counters,
                 msisdn_lo: int, msisdn_count: int, profiles, rating_groups,
                 relaxed: bool = False, expected_results=(SUCCESS,), request_octets: int = 0,
                 plan_octets: int = 0, timeout_ns: int = 5_000_000_000, seed: int = 1,
                 e2e_base: int = 0, schedule: np.ndarray | None = None, stride: int = 1,
                 phase: int = 0):
        self.slots_count = slots
        self.templates = templates
        self.counters = counters
        max_rg = templates.max_rating_groups
        self.slots = np.zeros((slots, N_SLOT_COLS), np.int64)
        self.rating_groups = np.zeros((slots, max_rg), np.int64)
        self.granted = np.zeros((slots, max_rg), np.int64)
        self.used = np.zeros((slots, max_rg), np.int64)
        self.ready = np.zeros(slots, np.int64)
        self.seq = np.zeros(N_SEQ, np.int64)
        self.seq[Q_SEND_LIMIT] = 1 << 62
        self.rng = np.array([seed * 0x9E3779B97F4A7C15 & (2**64 - 1)], np.uint64)
        self.params = np.zeros(N_PARAMS, np.int64)
        self.params[:] = [max(1, (slots - 1).bit_length()), msisdn_lo, msisdn_count,
                          templates.msisdn_digits, int(relaxed), e2e_base, request_octets,
                          plan_octets, int(schedule is not None), stride, phase, max_rg,
                          timeout_ns, 0]
        self.schedule = (np.zeros((1, 4), np.float64) if schedule is None else schedule)
        self.profiles = np.array(profiles, np.int64).reshape(-1, N_PROFILE_COLS)
        self.profiles[:, PR_CUM_WEIGHT] = np.cumsum(self.profiles[:, PR_CUM_WEIGHT])
        if int(self.profiles[:, PR_RG_MAX].max()) > min(max_rg, len(rating_groups)):
            raise ValueError("a profile wants more rating groups than the run has")
        self.rg_ids = np.array(rating_groups, np.int64)
        self.expected = np.zeros(N_RESULT_CODES, np.bool_)
        self.expected[list(expected_results)] = True
        per_sub = msisdn_count if plan_octets > 0 else 1
        self.sub_consumed = np.zeros(per_sub, np.int64)
        self.sub_held = np.zeros(per_sub, np.int64)
        self.sid_prefix = np.frombuffer(templates.sid_prefix, np.uint8).copy()
        self.out = np.zeros(slots * int(templates.lengths.max()), np.uint8)
        self.other = np.zeros(1024, np.int64)  # offsets of non-CCA frames
        self.fields = np.zeros(N_FIELDS, np.int64)
        self.answer_msccs = np.zeros((MAX_ANSWER_MSCC, N_MSCC_COLS), np.int64)
        for slot in range(slots):
            _new_session(slot, *self._state())

    def _state(self):
        c = self.counters
        return (self.slots, self.rating_groups, self.granted, self.used, self.ready,
                self.seq, self.rng, c.stats, self.params, self.profiles, self.rg_ids,
                self.sub_consumed, self.sub_held)

    def compile(self) -> None:
        """Compile (or load from numba's cache) the kernels before connecting."""
        self.step(np.zeros(codec.HEADER_LEN, np.uint8), 0, 0, 0)
        self.expire(0)

    def start(self, start_ns: int) -> None:
        """Traffic starts now: open-loop arrivals are due from start_ns on."""
        self.params[P_START_NS] = start_ns

    def limit(self, more_requests: int) -> None:
        """Send at most this many new requests from now on."""
        self.seq[Q_SEND_LIMIT] = self.seq[Q_SENT] + more_requests

    def read(self, rx: np.ndarray, size: int, now_ns: int) -> tuple[int, int]:
        """Judge every answer in rx[:size]: (bytes consumed or -1 if that is
        not Diameter, count of other messages, whose offsets are in self.other)."""
        c = self.counters
        return _read(rx, size, now_ns, *self._state(), c.results, c.latency, c.wire,
                     c.interval, self.expected, self.sid_prefix, self.other, self.fields,
                     self.answer_msccs)

    def emit(self, now_ns: int, send_until_ns: int) -> int:
        """Write the requests that may go now into self.out; returns their bytes.

        Requests are written only while now (closed loop) or their due time
        (open loop) is before send_until_ns; retransmissions always.
        """
        t = self.templates
        return _emit(now_ns, send_until_ns, self.slots, self.rating_groups, self.used,
                     self.ready, self.seq, self.counters.stats, self.params, t.bytes,
                     t.lengths, t.offsets, self.schedule, self.out)

    def step(self, rx: np.ndarray, size: int, now_ns: int, send_until_ns: int):
        """read, then emit: (bytes consumed, other messages, bytes to send)."""
        consumed, n_other = self.read(rx, size, now_ns)
        if consumed < 0:
            return consumed, n_other, 0
        return consumed, n_other, self.emit(now_ns, send_until_ns)

    def expire(self, now_ns: int) -> int:
        return _expire(now_ns, *self._state())

    def requeue(self) -> int:
        """The connection is gone: resend what was in flight (T-bit) on the next one."""
        return _requeue(self.slots, self.seq)

    def abandon(self) -> int:
        """Give up what is in flight (the run is over): each counts as a timeout."""
        return _expire(NEVER_NS, *self._state())

    @property
    def outstanding(self) -> int:
        return int(self.seq[Q_OUTSTANDING])

    @property
    def next_due_ns(self) -> int:
        """Open loop: when the next request is due (absolute ns); closed: never."""
        return int(self.seq[Q_NEXT_DUE_NS]) if self.params[P_OPEN_LOOP] else NEVER_NS

    def may_send(self, now_ns: int) -> bool:
        """Whether answers just read may let a request go before its timer would.

        Closed loop: always (the window refills). Open loop: when a request
        is due now, or is queued for a free session. Waking the sender for
        nothing would spend the generator's CPU on wakeups, not requests.
        """
        return (not self.params[P_OPEN_LOOP] or bool(self.seq[Q_BLOCKED])
                or self.seq[Q_NEXT_DUE_NS] <= now_ns - 200_000)

    def backlog(self, now_ns: int) -> int:
        """Open loop: requests due by now and not yet sent."""
        if not self.params[P_OPEN_LOOP] or now_ns < self.params[P_START_NS]:
            return 0
        offered = int(count_by(self.schedule, (now_ns - self.params[P_START_NS]) / 1e9))
        stride, phase = int(self.params[P_STRIDE]), int(self.params[P_PHASE])
        due = (offered - phase) // stride + 1 if offered >= phase else 0
        return max(0, due - int(self.seq[Q_NEXT_ARRIVAL]))

    @property
    def retransmit_pending(self) -> int:
        return int(self.slots[:, S_RETRANSMIT].sum())


@njit(cache=True, inline="always")
def _random(rng, n):
    """Uniform in [0, n): splitmix64 (Steele et al.), deterministic per seed."""
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(11)) % n


@njit(cache=True)
def _new_session(s, slots, rgs, granted, used, ready, seq, rng, stats, params, profiles,
                 rg_ids, sub_consumed, sub_held):
    slots[s, S_SESSION] = seq[Q_NEXT_SESSION]
    seq[Q_NEXT_SESSION] += 1
    sub = seq[Q_NEXT_SUBSCRIBER] % params[P_MSISDN_COUNT]
    seq[Q_NEXT_SUBSCRIBER] += 1
    slots[s, S_SUB] = sub
    slots[s, S_MSISDN] = params[P_MSISDN_LO] + sub
    pick = _random(rng, profiles[-1, PR_CUM_WEIGHT])
    p = 0
    while profiles[p, PR_CUM_WEIGHT] <= pick:
        p += 1
    slots[s, S_PROFILE] = p
    lo, hi = profiles[p, PR_RG_MIN], profiles[p, PR_RG_MAX]
    n = lo + _random(rng, hi - lo + 1)
    first = _random(rng, len(rg_ids))
    for i in range(n):
        rgs[s, i] = rg_ids[(first + i) % len(rg_ids)]
        granted[s, i] = 0
        used[s, i] = 0
    slots[s, S_N_RG] = n
    slots[s, S_REQNO] = 0
    slots[s, S_KIND] = INITIAL
    # Drawn lengths also keep sessions that started together from staying in step.
    slots[s, S_UPDATES_LEFT] = profiles[p, PR_UPDATES_MIN] + _random(
        rng, profiles[p, PR_UPDATES_MAX] - profiles[p, PR_UPDATES_MIN] + 1)
    slots[s, S_OPEN] = 0
    slots[s, S_RETRANSMIT] = 0
    _make_ready(s, ready, seq)


@njit(cache=True, inline="always")
def _make_ready(s, ready, seq):
    ready[seq[Q_READY_TAIL] % len(ready)] = s
    seq[Q_READY_TAIL] += 1


@njit(cache=True)
def _release(s, slots, granted, params, sub_held):
    """The session's grants are no longer held (it ended or was abandoned)."""
    if params[P_PLAN_OCTETS] > 0:
        for i in range(slots[s, S_N_RG]):
            sub_held[slots[s, S_SUB]] -= granted[s, i]
    for i in range(slots[s, S_N_RG]):
        granted[s, i] = 0


@njit(cache=True)
def _session_id_matches(rx, f, sid_prefix, session_no):
    n = len(sid_prefix)
    if f[F_SID_OFF] < 0 or f[F_SID_LEN] != n + ccr.SID_DIGITS:
        return False
    at = f[F_SID_OFF]
    for i in range(n):
        if rx[at + i] != sid_prefix[i]:
            return False
    for i in range(n + ccr.SID_DIGITS - 1, n - 1, -1):
        if rx[at + i] != 48 + session_no % 10:
            return False
        session_no //= 10
    return True


@njit(cache=True)
def _judge(rx, f, m, s, slots, rgs, expected, sid_prefix, params):
    """The first failed check of an answer (a stat index), or -1."""
    if f[F_MALFORMED]:
        return MALFORMED
    if params[P_RELAXED]:
        return -1
    if not _session_id_matches(rx, f, sid_prefix, slots[s, S_SESSION]):
        return FAIL_SESSION_ID
    if f[F_REQNO] != slots[s, S_REQNO]:
        return FAIL_REQUEST_NUMBER
    code = f[F_RESULT]
    if not (0 < code < N_RESULT_CODES and expected[code]):
        return FAIL_RESULT_CODE
    n_mscc = min(f[F_MSCC_COUNT], MAX_ANSWER_MSCC)
    for j in range(n_mscc):
        r = m[j, M_RESULT]
        if not (r < 0 or (r < N_RESULT_CODES and expected[r])):
            return FAIL_RESULT_CODE
        if m[j, M_GRANTED] > params[P_REQUEST_OCTETS] > 0:
            return FAIL_OVER_REQUEST
        if code == SUCCESS and _find(rgs, s, slots[s, S_N_RG], m[j, M_RATING_GROUP]) < 0:
            return FAIL_MSCC  # a grant for a rating group we did not ask about
    if code == SUCCESS and slots[s, S_KIND] != TERMINATE:
        for i in range(slots[s, S_N_RG]):  # TS 32.299 6.4.3: each MSCC is answered
            if _mscc_row(m, n_mscc, rgs[s, i]) < 0:
                return FAIL_MSCC
    return -1


@njit(cache=True, inline="always")
def _find(rgs, s, n, rating_group):
    for i in range(n):
        if rgs[s, i] == rating_group:
            return i
    return -1


@njit(cache=True, inline="always")
def _mscc_row(m, n_mscc, rating_group):
    for j in range(n_mscc):
        if m[j, M_RATING_GROUP] == rating_group:
            return j
    return -1


@njit(cache=True)
def _account(f, m, s, slots, rgs, granted, used, rng, stats, params, profiles,
             sub_consumed, sub_held):
    """Take the grants of a successful answer; draw the usage to report next.

    Returns False when the subscriber now holds more than the plan allows.
    """
    relaxed = params[P_RELAXED] != 0
    n_mscc = min(f[F_MSCC_COUNT], MAX_ANSWER_MSCC)
    sub = slots[s, S_SUB]
    p = slots[s, S_PROFILE]
    total = 0
    refused = False
    for i in range(slots[s, S_N_RG]):
        previous = granted[s, i]
        reported = used[s, i] if slots[s, S_KIND] != INITIAL else 0
        g = 0
        j = _mscc_row(m, n_mscc, rgs[s, i])
        if j >= 0 and not relaxed:
            r = m[j, M_RESULT]
            if r < 0 or r == SUCCESS:
                g = max(m[j, M_GRANTED], 0)
            else:
                refused = True
        granted[s, i] = g
        total += g
        if params[P_PLAN_OCTETS] > 0:
            # What the server may have debited: at most what was granted.
            sub_consumed[sub] += min(reported, previous)
            sub_held[sub] += g - previous
        share = profiles[p, PR_USE_MIN] + _random(
            rng, profiles[p, PR_USE_MAX] - profiles[p, PR_USE_MIN] + 1)
        used[s, i] = g * share // 100
    stats[OCTETS_GRANTED] += total
    if refused:
        stats[REFUSED] += 1
    if total == 0 and not relaxed:
        if not refused:
            stats[ZERO_GRANTS] += 1
        slots[s, S_KIND] = TERMINATE
    elif slots[s, S_UPDATES_LEFT] > 0:
        slots[s, S_UPDATES_LEFT] -= 1
        slots[s, S_KIND] = UPDATE
    else:
        slots[s, S_KIND] = TERMINATE
    plan = params[P_PLAN_OCTETS]
    return plan <= 0 or sub_consumed[sub] + sub_held[sub] <= plan


@njit(cache=True)
def _on_answer(rx, f, m, now_ns, slots, rgs, granted, used, ready, seq, rng, stats,
               params, profiles, rg_ids, sub_consumed, sub_held, results, latency, wire,
               interval, expected, sid_prefix):
    s = f[F_HBH] & ((1 << params[P_SLOT_BITS]) - 1)
    if s >= len(slots) or not slots[s, S_OUTSTANDING] or slots[s, S_HBH] != f[F_HBH]:
        stats[UNMATCHED] += 1
        return
    slots[s, S_OUTSTANDING] = 0
    seq[Q_OUTSTANDING] -= 1
    waited = now_ns - slots[s, S_INTENDED_NS]
    record(latency, waited)
    record(interval, waited)
    record(wire, now_ns - slots[s, S_SENT_NS])
    stats[MAX_LATENCY_NS] = max(stats[MAX_LATENCY_NS], waited)
    stats[ANSWERED] += 1
    code = f[F_RESULT]
    results[min(max(code, 0), N_RESULT_CODES - 1)] += 1
    state = (slots, rgs, granted, used, ready, seq, rng, stats, params, profiles, rg_ids,
             sub_consumed, sub_held)
    failure = _judge(rx, f, m, s, slots, rgs, expected, sid_prefix, params)
    if failure < 0 and (code == SUCCESS or params[P_RELAXED]) and slots[s, S_KIND] != TERMINATE:
        slots[s, S_OPEN] = 1
        if not _account(f, m, s, slots, rgs, granted, used, rng, stats, params, profiles,
                        sub_consumed, sub_held):
            failure = FAIL_OVER_PLAN
        else:
            slots[s, S_REQNO] += 1
            _make_ready(s, ready, seq)
            return
    if failure >= 0:
        stats[failure] += 1
        stats[CHECK_FAILED] += 1
        stats[SESSIONS_ABANDONED] += 1
        _release(s, slots, granted, params, sub_held)
        _new_session(s, *state)
        return
    if slots[s, S_KIND] == TERMINATE:
        if params[P_PLAN_OCTETS] > 0:
            for i in range(slots[s, S_N_RG]):
                sub_consumed[slots[s, S_SUB]] += min(used[s, i], granted[s, i])
        _release(s, slots, granted, params, sub_held)
        stats[SESSIONS_COMPLETED] += 1
        _new_session(s, *state)
        return
    # An expected failure Result-Code (e.g. 4012 credit limit reached).
    stats[REFUSED] += 1
    if not slots[s, S_OPEN]:
        _new_session(s, *state)  # a failed CCA-I leaves no session to terminate
        return
    slots[s, S_KIND] = TERMINATE  # RFC 4006 5.6: stop the service, report, end
    slots[s, S_REQNO] += 1
    _make_ready(s, ready, seq)


@njit(cache=True)
def _read(rx, size, now_ns, slots, rgs, granted, used, ready, seq, rng, stats, params,
          profiles, rg_ids, sub_consumed, sub_held, results, latency, wire, interval,
          expected, sid_prefix, other, f, m):
    pos = 0
    n_other = 0
    while pos + codec.HEADER_LEN <= size:
        length = codec._u24(rx, pos + 1)
        if rx[pos] != 1 or length < codec.HEADER_LEN or length % 4:
            return -1, n_other  # not Diameter: the caller drops the connection
        if pos + length > size:
            break
        if codec._u24(rx, pos + 5) != CMD_CREDIT_CONTROL or rx[pos + 4] & codec.FLAG_REQUEST:
            if n_other < len(other):
                other[n_other] = pos
                n_other += 1
        else:
            codec.read_answer(rx, pos, pos + length, f, m)
            _on_answer(rx, f, m, now_ns, slots, rgs, granted, used, ready, seq, rng, stats,
                       params, profiles, rg_ids, sub_consumed, sub_held, results, latency,
                       wire, interval, expected, sid_prefix)
        pos += length
    return pos, n_other


@njit(cache=True)
def _write(s, now_ns, intended, retransmit, pos, slots, rgs, used, seq, stats, params,
           tmpl, lengths, offsets, out):
    gen = slots[s, S_GENERATION] + 1
    slots[s, S_GENERATION] = gen
    hbh = ((gen << params[P_SLOT_BITS]) | s) & 0xFFFFFFFF
    if not retransmit:  # a retransmission keeps its end-to-end id (RFC 6733 6.2)
        slots[s, S_E2E] = (params[P_E2E_BASE] + seq[Q_NEXT_E2E]) & 0xFFFFFFFF
        seq[Q_NEXT_E2E] += 1
        slots[s, S_INTENDED_NS] = intended
    kind = slots[s, S_KIND]
    n = slots[s, S_N_RG]
    row = (kind - 1) * params[P_MAX_RG] + n - 1
    pos = ccr.fill_ccr(out, pos, tmpl, lengths, offsets, params[P_MSISDN_DIGITS], row,
                       slots[s, S_SESSION], slots[s, S_MSISDN], slots[s, S_REQNO],
                       rgs[s], used[s], n, hbh, slots[s, S_E2E], retransmit)
    slots[s, S_HBH] = hbh
    slots[s, S_SENT_NS] = now_ns
    slots[s, S_OUTSTANDING] = 1
    seq[Q_OUTSTANDING] += 1
    if retransmit:
        stats[RETRANSMITTED] += 1
        return pos
    stats[SENT] += 1
    stats[SENT_INITIAL + kind - 1] += 1
    seq[Q_SENT] += 1
    if kind != TERMINATE:
        stats[OCTETS_REQUESTED] += params[P_REQUEST_OCTETS] * n
    if kind != INITIAL:
        for i in range(n):
            stats[OCTETS_REPORTED] += used[s, i]
    return pos


@njit(cache=True)
def _emit(now_ns, send_until_ns, slots, rgs, used, ready, seq, stats, params, tmpl,
          lengths, offsets, schedule, out):
    pos = 0
    if seq[Q_RETRANSMITS]:
        for s in range(len(slots)):
            if slots[s, S_RETRANSMIT]:
                slots[s, S_RETRANSMIT] = 0
                pos = _write(s, now_ns, 0, True, pos, slots, rgs, used, seq, stats, params,
                             tmpl, lengths, offsets, out)
        seq[Q_RETRANSMITS] = 0
    if not params[P_OPEN_LOOP]:
        while (seq[Q_READY_HEAD] < seq[Q_READY_TAIL] and now_ns < send_until_ns
               and seq[Q_SENT] < seq[Q_SEND_LIMIT]):
            s = ready[seq[Q_READY_HEAD] % len(ready)]
            seq[Q_READY_HEAD] += 1
            pos = _write(s, now_ns, now_ns, False, pos, slots, rgs, used, seq, stats, params,
                         tmpl, lengths, offsets, out)
        return pos
    # When the caller must wake up to send again; never while nothing can go.
    seq[Q_NEXT_DUE_NS] = NEVER_NS
    seq[Q_BLOCKED] = 0
    while seq[Q_SENT] < seq[Q_SEND_LIMIT]:
        due = params[P_START_NS] + np.int64(intended_ns(
            schedule, seq[Q_NEXT_ARRIVAL] * params[P_STRIDE] + params[P_PHASE]))
        if due >= send_until_ns:
            break
        if due > now_ns:
            seq[Q_NEXT_DUE_NS] = due
            break
        if now_ns - due > params[P_TIMEOUT_NS]:
            # Waited for a free session longer than a gateway waits for an answer.
            stats[TIMEOUTS] += 1
            stats[TIMEOUTS_UNSENT] += 1
            seq[Q_NEXT_ARRIVAL] += 1
            continue
        if seq[Q_READY_HEAD] == seq[Q_READY_TAIL]:
            seq[Q_BLOCKED] = 1  # every session awaits an answer: the request queues
            break
        s = ready[seq[Q_READY_HEAD] % len(ready)]
        seq[Q_READY_HEAD] += 1
        seq[Q_NEXT_ARRIVAL] += 1
        pos = _write(s, now_ns, due, False, pos, slots, rgs, used, seq, stats, params,
                     tmpl, lengths, offsets, out)
    return pos


@njit(cache=True)
def _expire(now_ns, slots, rgs, granted, used, ready, seq, rng, stats, params, profiles,
            rg_ids, sub_consumed, sub_held):
    """Give up on requests sent longer than the timeout ago (or waiting to be
    resent that long); their slots start afresh."""
    expired = 0
    for s in range(len(slots)):
        waiting = slots[s, S_OUTSTANDING] or slots[s, S_RETRANSMIT]
        if waiting and now_ns - slots[s, S_SENT_NS] > params[P_TIMEOUT_NS]:
            if slots[s, S_OUTSTANDING]:
                seq[Q_OUTSTANDING] -= 1
            slots[s, S_OUTSTANDING] = 0
            slots[s, S_RETRANSMIT] = 0
            stats[TIMEOUTS] += 1
            stats[SESSIONS_ABANDONED] += 1
            expired += 1
            _release(s, slots, granted, params, sub_held)
            _new_session(s, slots, rgs, granted, used, ready, seq, rng, stats, params,
                         profiles, rg_ids, sub_consumed, sub_held)
    return expired


@njit(cache=True)
def _requeue(slots, seq):
    n = 0
    for s in range(len(slots)):
        if slots[s, S_OUTSTANDING]:
            slots[s, S_OUTSTANDING] = 0
            slots[s, S_RETRANSMIT] = 1
            seq[Q_OUTSTANDING] -= 1
            n += 1
    seq[Q_RETRANSMITS] += n
    return n
