"""Judging a Credit-Control-Answer and taking its grants (compiled).

Every answer is checked (RFC 4006 section 3.2, TS 32.299 section 6.4.3):
the hop-by-hop id finds the request; then the Session-Id and
CC-Request-Number must be the request's, the Result-Code and every MSCC's
Result-Code one the scenario expects, each requested rating group answered
by one MSCC and no other, no grant beyond the Requested-Service-Unit, and
no subscriber holding (granted, not yet reported) plus using more than the
plan allows. The first failed check is counted and the session abandoned.
A grant is then taken and the next report drawn from the session's usage
profile: never more than granted, unless the profile allows over-use.
"""
from __future__ import annotations

from numba import njit

from ocs.diameter.constants import CMD_CREDIT_CONTROL

from . import ccr, codec
from .codec import (F_HBH, F_MALFORMED, F_MSCC_COUNT, F_REQNO, F_RESULT, F_SID_LEN,
                    F_SID_OFF, INITIAL, M_GRANTED, M_RATING_GROUP, M_RESULT,
                    MAX_ANSWER_MSCC, TERMINATE, UPDATE)
from .histogram import record
from .slots import (ANSWERED, CHECK_FAILED, FAIL_MSCC, FAIL_OVER_PLAN, FAIL_OVER_REQUEST,
                    FAIL_REQUEST_NUMBER, FAIL_RESULT_CODE, FAIL_SESSION_ID, MALFORMED,
                    MAX_LATENCY_NS, N_RESULT_CODES, OCTETS_GRANTED, P_PLAN_OCTETS,
                    P_RELAXED, P_REQUEST_OCTETS, P_SLOT_BITS, PR_USE_MAX, PR_USE_MIN,
                    Q_OUTSTANDING, REFUSED, S_HBH, S_INTENDED_NS, S_KIND, S_N_RG, S_OPEN,
                    S_OUTSTANDING, S_PROFILE, S_REQNO, S_SENT_NS, S_SESSION, S_SUB,
                    S_UPDATES_LEFT, SESSIONS_ABANDONED, SESSIONS_COMPLETED, SUCCESS,
                    UNMATCHED, ZERO_GRANTS, _make_ready, _new_session, _random, _release)


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
    code = f[F_RESULT]
    if not (0 < code < N_RESULT_CODES and expected[code]):
        return FAIL_RESULT_CODE  # before the number: error answers may lack it
    if f[F_REQNO] != slots[s, S_REQNO]:
        return FAIL_REQUEST_NUMBER
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
