"""The state of a gateway's sessions: table columns, counters, shared kernels.

One row per session slot (a slot runs sessions back to back, one request in
flight at a time); the rating groups, grants and usage of a slot's current
session are rows of three small side tables. `Counters` hold what all the
gateways of a run add to. loadtest.sessions explains the model.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import codec
from .codec import INITIAL
from .histogram import N_BUCKETS

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
        self.stats = np.zeros(N_STATS, np.int64)
        self.results = np.zeros(N_RESULT_CODES, np.int64)
        self.latency = np.zeros(N_BUCKETS, np.int64)   # from the intended send time
        self.wire = np.zeros(N_BUCKETS, np.int64)      # from the actual send
        self.interval = np.zeros(N_BUCKETS, np.int64)  # like latency, emptied each second

    def stat(self, name: str) -> int:
        return int(self.stats[STAT_NAMES.index(name)])


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
