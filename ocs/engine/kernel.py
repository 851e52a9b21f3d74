"""The charging kernel: one call rates, debits and reserves a whole batch.

Implements the credit-control semantics of RFC 4006 section 5 over the
tables of `tables.py`: used units are debited first (always, also when the
next grant is refused), the rating group's old reservation is released, and
a new one is taken bundle first, then money, never beyond what the balance
allows. The request that runs out gets the final units (FUI TERMINATE); the
one after it gets 4012.

`charge_batch` and `expire_sessions` are the public wrappers; the `_`
kernels are compiled with numba and do not allocate per request.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .tables import MSCC, PLAN, REQUEST, SESSION, SLOT_FREE, SLOTS, SUBSCRIBER

SUCCESS = 2001
END_USER_SERVICE_DENIED = 4010
CREDIT_LIMIT_REACHED = 4012
RESOURCES_EXCEEDED = 5006
RATING_FAILED = 5031
TERMINATION_REQUEST = 3
EVENT_REQUEST = 4
USER_UNKNOWN = 5030
DIRECT_DEBITING = 0
REFUND_ACCOUNT = 1
CHECK_BALANCE = 2
PRICE_ENQUIRY = 3

_CACHE = True


@njit(cache=_CACHE)
def _ceil_div(a, b):
    return -((-a) // b)


@njit(cache=_CACHE)
def _in_list(lst, start, count, rg):
    for k in range(start, start + count):
        if lst[k] == rg:
            return True
    return False


@njit(cache=_CACHE)
def _rating(plans, p, rgs, denied, rg):
    """0 if the plan rates `rg`; else the MSCC Result-Code (4010 or 5031)."""
    pl = plans[p]
    if _in_list(denied, pl["deny_start"], pl["deny_count"], rg):
        return END_USER_SERVICE_DENIED
    if pl["all_rgs"] == 0 and not _in_list(rgs, pl["rg_start"], pl["rg_count"], rg):
        return RATING_FAILED
    return 0


@njit(cache=_CACHE)
def _rollover(subs, sub, period):
    s = subs[sub]
    if s["period"] != period:
        s["period"] = period
        s["bundle_used"] = 0
        s["overage_used"] = 0
        s["spent"] = 0


@njit(cache=_CACHE)
def _release(subs, sessions, sub, sess, slot):
    subs[sub]["res_bundle"] -= sessions[sess]["res_bundle"][slot]
    subs[sub]["res_money"] -= sessions[sess]["res_money"][slot]
    sessions[sess]["res_bundle"][slot] = 0
    sessions[sess]["res_money"][slot] = 0
    sessions[sess]["granted"][slot] = 0


@njit(cache=_CACHE)
def _bundle_free(s, pl):
    """Bundle octets neither used nor held by a reservation."""
    avail = pl["bundle"] - s["bundle_used"] - s["res_bundle"]
    return avail if avail > 0 else 0


@njit(cache=_CACHE)
def _debit(subs, plans, sub, p, m):
    """Charge reported usage: bundle first, then per started unit of money."""
    s = subs[sub]
    pl = plans[p]
    used = m["used"]
    avail = _bundle_free(s, pl)
    b = used if used < avail else avail
    s["bundle_used"] += b
    m["from_bundle"] += b
    over = used - b
    if over > 0:
        s["overage_used"] += over
        if pl["price"] > 0:
            cost = _ceil_div(over, pl["unit"]) * pl["price"]
            s["balance"] -= cost
            s["spent"] += cost
            m["charged"] += cost


@njit(cache=_CACHE)
def _price(subs, plans, sub, p, octets):
    """What `octets` would cost now, bundle first (a price enquiry)."""
    s = subs[sub]
    pl = plans[p]
    avail = _bundle_free(s, pl)
    over = octets - (octets if octets < avail else avail)
    if over > 0 and pl["price"] > 0:
        return _ceil_div(over, pl["unit"]) * pl["price"]
    return 0


@njit(cache=_CACHE)
def _grant(subs, plans, sub, p, want):
    """Octets grantable now, and the bundle and money they would hold."""
    s = subs[sub]
    pl = plans[p]
    avail = _bundle_free(s, pl)
    gb = want if want < avail else avail
    rem = want - gb
    go = 0
    money = 0
    if rem > 0 and pl["price"] >= 0:
        needed = _ceil_div(rem, pl["unit"])
        units = needed
        if pl["price"] > 0:
            free = s["balance"] - s["res_money"]
            affordable = free // pl["price"] if free > 0 else 0
            if affordable < units:
                units = affordable
        go = units * pl["unit"]
        if go > rem:
            go = rem
        money = units * pl["price"]
    return gb, go, money


@njit(cache=_CACHE)
def _find_slot(sessions, sess, rg):
    for k in range(SLOTS):
        if sessions[sess]["rg"][k] == rg:
            return k
    return -1


@njit(cache=_CACHE)
def _charge(reqs, msccs, subs, sessions, plans, rgs, denied, now, dirty_subs, dirty_sess):
    nds = 0
    ndx = 0
    for i in range(reqs.shape[0]):
        r = reqs[i]
        if r["result"] != 0:
            continue
        sub = r["sub"]
        if sub < 0 or sub >= subs.shape[0]:
            r["result"] = USER_UNKNOWN
            continue
        p = subs[sub]["plan"]
        pl = plans[p]
        _rollover(subs, sub, pl["period"])
        dirty_subs[nds] = sub
        nds += 1
        sess = r["sess"]
        is_event = r["type"] == EVENT_REQUEST
        ok = r["mscc_count"] == 0
        first_fail = 0
        for j in range(r["mscc_start"], r["mscc_start"] + r["mscc_count"]):
            m = msccs[j]
            rg = m["rg"]
            m["granted"] = -1
            m["final"] = 0
            m["charged"] = 0
            m["from_bundle"] = 0
            slot = -1
            if not is_event:
                slot = _find_slot(sessions, sess, rg)
                if slot >= 0:
                    _release(subs, sessions, sub, sess, slot)
            rating = _rating(plans, p, rgs, denied, rg)
            if m["used"] > 0 and rating == 0:
                _debit(subs, plans, sub, p, m)
            if m["used_time"] > 0:
                subs[sub]["used_time"] += m["used_time"]
            result = SUCCESS
            if rating != 0:
                result = rating
            elif m["has_rsu"] and r["type"] != TERMINATION_REQUEST:
                want = m["rsu_octets"] if m["rsu_octets"] > 0 else pl["default_grant"]
                if is_event and r["action"] == CHECK_BALANCE:
                    want = 0
                if want > pl["max_grant"]:
                    want = pl["max_grant"]
                action = r["action"] if is_event else -1
                if action == REFUND_ACCOUNT:
                    # RFC 4006 6.4: give back the money value of the units
                    back = _ceil_div(want, pl["unit"]) * pl["price"] if pl["price"] > 0 else 0
                    subs[sub]["balance"] += back
                    subs[sub]["spent"] -= back
                    m["charged"] -= back
                    want = -1
                elif action == PRICE_ENQUIRY:
                    # RFC 4006 6.5: the price, nothing debited or reserved
                    m["charged"] = _price(subs, plans, sub, p, want)
                    want = -1
                gb, go, money = _grant(subs, plans, sub, p, want) if want >= 0 else (0, 0, 0)
                granted = gb + go
                if want < 0:
                    pass
                elif granted == 0 and want > 0:
                    result = CREDIT_LIMIT_REACHED
                    m["final"] = 1
                elif is_event:
                    if granted < want:
                        # direct debiting is all or nothing (RFC 4006 section 6.3)
                        result = CREDIT_LIMIT_REACHED
                    else:
                        m["used"] = granted
                        _debit(subs, plans, sub, p, m)
                        m["granted"] = granted
                        m["validity"] = 0
                else:
                    if slot < 0:
                        slot = _find_slot(sessions, sess, SLOT_FREE)
                    if slot < 0:
                        result = RESOURCES_EXCEEDED
                    else:
                        sessions[sess]["rg"][slot] = rg
                        sessions[sess]["res_bundle"][slot] = gb
                        sessions[sess]["res_money"][slot] = money
                        sessions[sess]["granted"][slot] = granted
                        subs[sub]["res_bundle"] += gb
                        subs[sub]["res_money"] += money
                        m["granted"] = granted
                        m["granted_time"] = m["rsu_time"]
                        m["final"] = 1 if granted < want else 0
                        m["validity"] = pl["validity"]
                        slot = -2  # keep
            if slot >= 0:
                sessions[sess]["rg"][slot] = SLOT_FREE
            m["result"] = result
            if result == SUCCESS:
                ok = True
            elif first_fail == 0:
                first_fail = result
        if is_event and r["action"] == CHECK_BALANCE:
            # ENOUGH_CREDIT (0) if at least one more unit could be granted (RFC 4006 8.6)
            free = subs[sub]["balance"] - subs[sub]["res_money"]
            bundle_left = pl["bundle"] - subs[sub]["bundle_used"] - subs[sub]["res_bundle"]
            price = pl["price"]
            enough = bundle_left > 0 or price == 0 or (price > 0 and free >= price)
            r["check_balance"] = 0 if enough else 1
        r["result"] = SUCCESS if ok else first_fail
        if sess >= 0:
            dirty_sess[ndx] = sess
            ndx += 1
            if r["type"] == TERMINATION_REQUEST:
                _close_session(subs, sessions, sess)
            else:
                sessions[sess]["expiry"] = now + 2.0 * pl["validity"]
    return nds, ndx


@njit(cache=_CACHE)
def _close_session(subs, sessions, sess):
    sub = sessions[sess]["sub"]
    for k in range(SLOTS):
        if sessions[sess]["rg"][k] != SLOT_FREE:
            _release(subs, sessions, sub, sess, k)
            sessions[sess]["rg"][k] = SLOT_FREE
    sessions[sess]["sub"] = -1


@njit(cache=_CACHE)
def _expire(subs, sessions, now, dirty_subs, dirty_sess):
    n = 0
    for s in range(sessions.shape[0]):
        if sessions[s]["sub"] >= 0 and sessions[s]["expiry"] <= now:
            dirty_subs[n] = sessions[s]["sub"]
            dirty_sess[n] = s
            n += 1
            _close_session(subs, sessions, s)
            if n == dirty_sess.shape[0]:
                break
    return n


def _check(arr: np.ndarray, dtype: np.dtype, name: str) -> None:
    if arr.dtype != dtype:
        raise TypeError(f"{name} has dtype {arr.dtype}, expected the {name} table dtype")


def charge_batch(reqs, msccs, subs, sessions, plans, rgs, denied, now: float):
    """Rate, debit and reserve a batch; returns the subscriber and session
    rows it changed (for the journal)."""
    _check(reqs, REQUEST, "REQUEST")
    _check(msccs, MSCC, "MSCC")
    _check(subs, SUBSCRIBER, "SUBSCRIBER")
    _check(sessions, SESSION, "SESSION")
    _check(plans, PLAN, "PLAN")
    n = reqs.shape[0]
    dirty_subs = np.empty(n, np.int64)
    dirty_sess = np.empty(n, np.int64)
    nds, ndx = _charge(reqs, msccs, subs, sessions, plans, rgs, denied, float(now), dirty_subs, dirty_sess)
    return dirty_subs[:nds], dirty_sess[:ndx]


def expire_sessions(subs, sessions, now: float, limit: int = 65536):
    """Release the reservations of sessions past their Tcc deadline
    (RFC 4006 section 13); returns the changed subscriber and session rows."""
    dirty_subs = np.empty(limit, np.int64)
    dirty_sess = np.empty(limit, np.int64)
    n = _expire(subs, sessions, float(now), dirty_subs, dirty_sess)
    return dirty_subs[:n], dirty_sess[:n]


def close_session(subs, sessions, sess: int) -> None:
    """Release every reservation of a session and free its row."""
    _close_session(subs, sessions, sess)
