"""The charging kernel: one call rates, debits and reserves a whole batch.

Implements the credit-control semantics of RFC 4006 section 5 over the
tables of `tables.py`. Per MSCC: the rating group's old reservation is
released; the reported usage is debited (always, also when the next grant
is refused), rated as of the time its grant was made; then a new grant is
reserved. Debits and grants walk the same road:

1. the buckets, in the plan's consumption order (night pack, directed pack,
   add-on packs, bundle, shared pool ...), each only for the traffic and the
   hours it covers, a member's pool draws within its sub-cap;
2. what no bucket covers goes to the plan's `after_bundle`: CHARGE (money at
   the tariff, flat or ladder, within the balance unless postpaid and
   within the fee and volume caps), THROTTLE (free quota, flagged for
   throttling) or STOP;
3. a cap reached turns CHARGE into the plan's `cap_action` (STOP, THROTTLE
   or FREE) until the period ends or a reopen lifts it; the absolute
   ceiling counts every octet and nothing lifts it.

A grant never takes a subscriber past a limit: the request that reaches
one gets the units up to it, exactly, with the Final-Unit-Indication of
what follows (TERMINATE, or RESTRICT_ACCESS with the throttle Filter-Id).

`charge_batch` and the other plain functions are the public wrappers; the
`_` kernels are compiled with numba and do not allocate per request. The
per-MSCC steps are in `grant.py` (rates, debits, grants, sponsors) and
`account.py` (plans, local time, periods, packs), inlined here.
"""
from __future__ import annotations

import os

import numpy as np
from numba import njit

from .account import _add_pack, _local_sec, _period, _period_end, _rating, _rollover
from .buckets import _cand_add
from ..codes import RequestedAction, RequestType, ResultCode
from .grant import (_find_slot, _grant, _hold, _quote, _rate, _release, _sp_debit, _sp_grant, _sp_unhold,
                    _unhold, _validity)
from .notices import R_THROTTLED, _daily, _daily_sweep, _thresholds
from .tables import (BATCH_COUNTS, FUI_NONE, FUI_RESTRICT, FUI_TERMINATE, GRANT, HOLDS, MSCC, PACKS, PLAN,
                     PLAN_BUCKETS, REQUEST, SESSION, SLOT_FREE, SLOTS, SPONSOR_HOLD, SUBSCRIBER, THROTTLE, ZONE,
                     Tables)
from .tariff import sat_add


SLOT_KEPT = -2                # `_charge`: the MSCC's slot holds its new grant (not freed)
# R_* (notices): why a grant stopped short, which some thresholds announce

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None


# ---------------------------------------------------------------- the batch
@njit(cache=_CACHE, _nrt=False, inline='always')
def _touch(T, subs, row, now, dirty, nd):
    """Roll the rows a request may change into the current period; note them
    for the journal (a plain subscriber is its own pool and payer)."""
    _rollover(T, subs, row, now)
    dirty[nd] = row
    nd += 1
    pool, payer = subs[row]["pool"], subs[row]["payer"]
    if pool != row:
        _rollover(T, subs, pool, now)
        dirty[nd] = pool
        nd += 1
    if payer != row and payer != pool:
        _rollover(T, subs, payer, now)
        dirty[nd] = payer
        nd += 1
    return nd


@njit(cache=_CACHE, _nrt=False)
def _charge(reqs, msccs, subs, sessions, spons, T, now, dirty_subs, dirty_sess, events, counts, hc, hv, out, sp):
    """The one loop the whole batch goes through, in one numba call: each
    request in order (it sees the rows the ones before it changed), each of
    its MSCCs released, debited, granted. One function because the per-MSCC
    steps are already inlined helpers (grant.py, account.py): what is left
    is their order and the state they share (the slot, the rating time, the
    holds hc/hv, the scratch out/sp), which reads best in one place."""
    nds = 0
    ndx = 0
    ne = 0
    sponsored = 0
    for i in range(reqs.shape[0]):
        r = reqs[i]
        if r["result"] != 0:
            continue
        sub = r["sub"]
        if sub < 0 or sub >= subs.shape[0]:
            r["result"] = ResultCode.USER_UNKNOWN
            continue
        nds = _touch(T, subs, sub, now, dirty_subs, nds)
        ne = _daily(T, subs, sub, events, ne)
        p = subs[sub]["plan"]
        pl = T.plans[p]
        sess = r["sess"]
        ctx = (r["apn"], np.int64(r["rat"]), r["plmn"])
        is_event = r["type"] == RequestType.EVENT
        action = r["action"] if is_event else -1
        ok = r["mscc_count"] == 0
        first_fail = 0
        reasons = 0
        for j in range(r["mscc_start"], r["mscc_start"] + r["mscc_count"]):
            m = msccs[j]
            rg = m["rg"]
            m["granted"] = -1
            m["final"] = FUI_NONE
            m["filter"] = -1
            m["charged"] = 0
            m["from_bundle"] = 0
            m["sponsor"] = -1
            m["sponsored"] = 0
            m["sponsor_charged"] = 0
            m["reason"] = 0
            sid = m["service_id"]
            slot = -1
            t_rate = now
            if not is_event:
                slot = _find_slot(sessions, sess, rg)
                if slot >= 0:
                    t_rate = sessions[sess]["grant_t"][slot]
                    _release(subs, sessions, spons, sub, sess, slot)
            rating = _rating(T, p, rg)
            if rating == 0 and _rate(T, subs, sub, ctx, rg, _local_sec(T, subs, sub, now))[2]:
                rating = ResultCode.END_USER_SERVICE_DENIED     # a rate refuses this traffic in this context
            if m["used"] > 0 and rating == 0:
                sponsored += _sp_debit(T, subs, spons, sub, ctx, rg, sid, t_rate, m["used"], m, hc, hv)
            if m["used_time"] > 0:
                subs[sub]["used_time"] += m["used_time"]
            if m["used"] > 0 and rating == 0:
                subs[sub]["day_used"] = sat_add(subs[sub]["day_used"], m["used"])
                subs[sub]["day_spent"] = sat_add(subs[sub]["day_spent"], m["charged"])
            result = ResultCode.SUCCESS
            if rating != 0:
                result = rating
            elif m["has_rsu"] and r["type"] != RequestType.TERMINATION and action != RequestedAction.CHECK_BALANCE:
                want = m["rsu_octets"] if m["rsu_octets"] > 0 else pl["default_grant"]
                if want > pl["max_grant"]:
                    want = pl["max_grant"]
                if action == RequestedAction.REFUND_ACCOUNT:
                    # refunds are settled against the debit they name, by
                    # ocs.gy.refund, never here: no money from units alone
                    result = ResultCode.UNABLE_TO_COMPLY
                elif action == RequestedAction.PRICE_ENQUIRY:
                    # RFC 4006 6.5: the price, nothing debited or reserved
                    m["charged"] = _quote(T, subs, sub, ctx, rg, now, want, hc, hv)
                else:
                    granted = _sp_grant(T, subs, spons, sub, ctx, rg, sid, now, want, hc, hv, out, sp)
                    sponsored += sp["contract"] >= 0
                    reasons |= out["reason"]
                    m["reason"] = out["reason"]
                    if granted == 0:
                        result = ResultCode.CREDIT_LIMIT_REACHED
                        m["final"] = FUI_TERMINATE
                        _unhold(subs, sub, hc, hv, 0, 0, 0)
                        _sp_unhold(spons, sp)
                    elif is_event:
                        _unhold(subs, sub, hc, hv, 0, 0, 0)
                        _sp_unhold(spons, sp)
                        if granted < want:
                            # direct debiting is all or nothing (RFC 4006 section 6.3)
                            result = ResultCode.CREDIT_LIMIT_REACHED
                        else:
                            m["used"] = granted
                            _sp_debit(T, subs, spons, sub, ctx, rg, sid, now, granted, m, hc, hv)
                            subs[sub]["day_used"] = sat_add(subs[sub]["day_used"], granted)
                            subs[sub]["day_spent"] = sat_add(subs[sub]["day_spent"], m["charged"])
                            m["granted"] = granted
                            m["validity"] = 0
                    else:
                        if slot < 0:
                            slot = _find_slot(sessions, sess, SLOT_FREE)
                        if slot < 0:
                            result = ResultCode.RESOURCES_EXCEEDED
                            _unhold(subs, sub, hc, hv, 0, 0, 0)
                            _sp_unhold(spons, sp)
                        else:
                            x = sessions[sess]
                            _hold(subs, sub, out)
                            x["rg"][slot] = rg
                            x["granted"][slot] = granted
                            x["grant_t"][slot] = now
                            x["res_money"][slot] = out["money"]
                            x["res_over"][slot] = out["over"]
                            x["sp"][slot], x["sp_octets"][slot] = sp["contract"], sp["octets"]
                            x["sp_money"][slot] = sp["money"]
                            for k in range(HOLDS):
                                x["hold_c"][slot, k] = hc[k]
                                x["hold_v"][slot, k] = hv[k]
                            m["granted"] = granted
                            m["granted_time"] = m["rsu_time"]
                            m["final"] = out["fui"]
                            m["validity"] = _validity(T, subs, sub, now, hc)
                            slot = SLOT_KEPT
                    if m["final"] == FUI_RESTRICT:
                        m["filter"] = pl["filter"]
                        if sp["contract"] >= 0 and T.contracts[sp["contract"]]["filter"] >= 0 and \
                                T.contracts[sp["contract"]]["fallback"] == THROTTLE:
                            m["filter"] = T.contracts[sp["contract"]]["filter"]
                    sp["contract"] = -1
            if slot >= 0:
                sessions[sess]["rg"][slot] = SLOT_FREE
            m["result"] = result
            if result == ResultCode.SUCCESS:
                ok = True
            elif first_fail == 0:
                first_fail = result
        if action == RequestedAction.CHECK_BALANCE:
            # ENOUGH_CREDIT (0) if at least one more octet could be granted (RFC 4006 8.6)
            rg = msccs[r["mscc_start"]]["rg"] if r["mscc_count"] > 0 else -1
            granted = _grant(T, subs, sub, ctx, rg, now, 1, hc, hv, out)
            _unhold(subs, sub, hc, hv, 0, 0, 0)
            r["check_balance"] = 0 if granted > 0 and out["reason"] & R_THROTTLED == 0 else 1
        r["result"] = ResultCode.SUCCESS if ok else first_fail
        ne = _thresholds(T, subs, sub, reasons, events, ne)
        pool, payer = subs[sub]["pool"], subs[sub]["payer"]
        if pool != sub:
            ne = _thresholds(T, subs, pool, 0, events, ne)
        if payer != sub and payer != pool:
            ne = _thresholds(T, subs, payer, 0, events, ne)
        if sess >= 0:
            dirty_sess[ndx] = sess
            ndx += 1
            if r["type"] == RequestType.TERMINATION:
                _close_session(subs, sessions, spons, sess)
            else:
                sessions[sess]["expiry"] = now + 2.0 * pl["validity"]
    counts["subs"], counts["sessions"], counts["events"], counts["sponsored"] = nds, ndx, ne, sponsored


@njit(cache=_CACHE, _nrt=False)
def _close_session(subs, sessions, spons, sess):
    sub = sessions[sess]["sub"]
    for k in range(SLOTS):
        if sessions[sess]["rg"][k] != SLOT_FREE:
            _release(subs, sessions, spons, sub, sess, k)
            sessions[sess]["rg"][k] = SLOT_FREE
    sessions[sess]["sub"] = -1


@njit(cache=_CACHE, _nrt=False)
def _expire(subs, sessions, spons, now, dirty_subs, dirty_sess):
    n = 0
    nd = 0
    for s in range(sessions.shape[0]):
        if sessions[s]["sub"] >= 0 and sessions[s]["expiry"] <= now:
            row = sessions[s]["sub"]
            dirty_subs[nd] = row
            dirty_subs[nd + 1] = subs[row]["pool"]
            dirty_subs[nd + 2] = subs[row]["payer"]
            nd += 3
            dirty_sess[n] = s
            n += 1
            _close_session(subs, sessions, spons, s)
            if n == dirty_sess.shape[0]:
                break
    return n, nd


@njit(cache=_CACHE, _nrt=False)
def _rebuild(subs, sessions, spons, n_subs):
    """Recount every row's (and sponsor's) held amounts from the open sessions."""
    for k in range(spons.shape[0]):
        spons[k]["res_octets"] = 0
        spons[k]["res_money"] = 0
    for r in range(n_subs):
        s = subs[r]
        for i in range(PLAN_BUCKETS):
            s["b_res"][i] = 0
        for k in range(PACKS):
            s["k_res"][k] = 0
        s["res_money"] = 0
        s["over_res"] = 0
        s["total_res"] = 0
        s["pool_res"] = 0
    for x in range(sessions.shape[0]):
        row = sessions[x]["sub"]
        if row < 0:
            continue
        for slot in range(SLOTS):
            if sessions[x]["rg"][slot] == SLOT_FREE:
                continue
            for k in range(HOLDS):
                c = sessions[x]["hold_c"][slot, k]
                if c >= 0:
                    _cand_add(subs, row, c, 0, sessions[x]["hold_v"][slot, k])
            k = sessions[x]["sp"][slot]
            if 0 <= k < spons.shape[0]:
                spons[k]["res_octets"] += sessions[x]["sp_octets"][slot]
                spons[k]["res_money"] += sessions[x]["sp_money"][slot]
            py = subs[row]["payer"]
            subs[py]["res_money"] += sessions[x]["res_money"][slot]
            subs[py]["over_res"] += sessions[x]["res_over"][slot]
            subs[row]["total_res"] += sessions[x]["granted"][slot]


def _check(arr: np.ndarray, dtype: np.dtype, name: str) -> None:
    if arr.dtype != dtype:
        raise TypeError(f"{name} has dtype {arr.dtype}, expected the {name} table dtype")


def charge_batch(reqs, msccs, subs, sessions, spons, tables: Tables, now: float):
    """Rate, debit and reserve a batch; returns the subscriber and session
    rows it changed (for the journal), the thresholds it crossed, and
    whether any sponsor's account changed."""
    _check(reqs, REQUEST, "REQUEST")
    _check(msccs, MSCC, "MSCC")
    _check(subs, SUBSCRIBER, "SUBSCRIBER")
    _check(sessions, SESSION, "SESSION")
    _check(tables.plans, PLAN, "PLAN")
    _check(tables.zones, ZONE, "ZONE")
    n = reqs.shape[0]
    dirty_subs = np.empty(3 * n, np.int64)
    dirty_sess = np.empty(n, np.int64)
    events = np.zeros(8 * n + 64, EVENT_DTYPE)
    counts = np.zeros(1, BATCH_COUNTS)[0]
    # scratch for one grant; the kernels run without numba's reference counting
    # (they allocate nothing), which would otherwise cost more than the charging
    hc = np.empty(HOLDS, np.int8)
    hv = np.empty(HOLDS, np.int64)
    out = np.zeros(1, GRANT)[0]
    sp = np.zeros(1, SPONSOR_HOLD)[0]
    _charge(reqs, msccs, subs, sessions, spons, tables, float(now), dirty_subs, dirty_sess, events, counts,
            hc, hv, out, sp)
    return (dirty_subs[:counts["subs"]], dirty_sess[:counts["sessions"]], events[:counts["events"]],
            bool(counts["sponsored"]))


def expire_sessions(subs, sessions, spons, now: float, limit: int = 65536):
    """Release the reservations of sessions past their Tcc deadline
    (RFC 4006 section 13); returns the changed subscriber and session rows."""
    dirty_subs = np.empty(3 * limit, np.int64)
    dirty_sess = np.empty(limit, np.int64)
    n, nd = _expire(subs, sessions, spons, float(now), dirty_subs, dirty_sess)
    return dirty_subs[:nd], dirty_sess[:n]


def close_session(subs, sessions, spons, sess: int) -> None:
    """Release every reservation of a session and free its row."""
    _close_session(subs, sessions, spons, sess)


def rebuild_reservations(subs, sessions, spons, n_subs: int) -> None:
    """Recount held amounts from the sessions (after the rules moved rows
    between pools or payers, or sponsors between contracts)."""
    _rebuild(subs, sessions, spons, n_subs)


def daily_sweep(subs, tables: Tables, n_subs: int, limit: int = 1 << 20):
    """Close the day of every row whose local date has moved on; returns the
    rows changed and the daily-summary events."""
    events = np.zeros(limit, EVENT_DTYPE)
    dirty = np.empty(limit, np.int64)
    ne, nd = _daily_sweep(tables, subs, n_subs, events, dirty)
    return dirty[:nd], events[:ne]


def add_pack(subs, tables: Tables, row: int, pack: int, now: float) -> int:
    """Give a subscriber a pack (a purchase, a gift, a trial); the slot or -1."""
    _rollover(tables, subs, row, float(now))
    _rollover(tables, subs, int(subs[row]["pool"]), float(now))
    return int(_add_pack(tables, subs, row, pack, float(now)))


def rollover(subs, tables: Tables, row: int, now: float) -> None:
    _rollover(tables, subs, row, float(now))


def period_bounds(subs, tables: Tables, row: int) -> tuple[int, float]:
    """(period id, epoch time it ends) of a row, as of the zone table."""
    pid, _ = _period(tables, subs, row)
    return int(pid), float(_period_end(tables, subs, row))


from .tables import EVENT as EVENT_DTYPE  # noqa: E402  (the kernel's output record)
