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

from . import ccr, codec
from .codec import INITIAL, MAX_ANSWER_MSCC, N_FIELDS, N_MSCC_COLS, TERMINATE
from .judge import _read
from .schedule import count_by, intended_ns
from .slots import (N_PROFILE_COLS, N_RESULT_CODES, N_SEQ, N_SLOT_COLS, N_PARAMS,
                    NEVER_NS, OCTETS_REPORTED, OCTETS_REQUESTED, P_E2E_BASE, P_MAX_RG,
                    P_MSISDN_DIGITS, P_OPEN_LOOP, P_PHASE, P_REQUEST_OCTETS, P_SLOT_BITS,
                    P_START_NS, P_STRIDE, P_TIMEOUT_NS, PR_CUM_WEIGHT, PR_RG_MAX,
                    Q_BLOCKED, Q_NEXT_ARRIVAL, Q_NEXT_DUE_NS, Q_NEXT_E2E, Q_OUTSTANDING,
                    Q_READY_HEAD, Q_READY_TAIL, Q_RETRANSMITS, Q_SEND_LIMIT, Q_SENT,
                    RETRANSMITTED, S_E2E, S_GENERATION, S_HBH, S_INTENDED_NS, S_KIND,
                    S_MSISDN, S_N_RG, S_OUTSTANDING, S_REQNO, S_RETRANSMIT, S_SENT_NS,
                    S_SESSION, SENT, SENT_INITIAL, SESSIONS_ABANDONED, SUCCESS, TIMEOUTS,
                    TIMEOUTS_UNSENT, Counters, _new_session, _release)


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
                 e2e_base: int = 0, first_hop_by_hop: int = 0,
                 schedule: np.ndarray | None = None, stride: int = 1,
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
        # Hop-by-hop ids start at a random value (RFC 6733 section 3), above
        # the slot bits; each slot then counts its own generations.
        self.slots[:, S_GENERATION] = first_hop_by_hop >> max(1, (slots - 1).bit_length())
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
