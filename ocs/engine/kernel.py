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
`_` kernels are compiled with numba and do not allocate per request.
"""
from __future__ import annotations

import os
import numpy as np
from numba import njit

from . import sponsor as SP
from .buckets import _cand_add, _cand_row, _in_hours, _in_list, _walk
from .calendar import period_of, zone_of as _zone
from .codes import RequestedAction, RequestType, ResultCode
from .notices import R_CAP, R_CEILING, R_CREDIT, R_THROTTLED, _daily, _daily_sweep, _thresholds
from .tables import (CHARGE, FREE, FREE_RATE, FUI_NONE, FUI_RESTRICT, FUI_TERMINATE, HOLDS,
                     MSCC, PACKS, PLAN, PLAN_BUCKETS, REQUEST, SESSION, SLOT_FREE, SLOTS,
                     STOP, SUBSCRIBER, THROTTLE, ZONE, Tables, GRANT, SPONSOR_HOLD, BATCH_COUNTS)
from .tariff import BIG, _affordable, _cost, sat_add, sat_sub


SLOT_KEPT = -2                # `_charge`: the MSCC's slot holds its new grant (not freed)
NEVER = -(1 << 31) + 1        # the period of a row that has never been charged (an int32)
# R_* (notices): why a grant stopped short, which some thresholds announce

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None


@njit(cache=_CACHE, _nrt=False, inline='always')
def _rating(T, p, rg):
    """0 if the plan rates `rg`; else the MSCC Result-Code (4010 or 5031)."""
    pl = T.plans[p]
    if _in_list(T.denied_rgs, pl["deny_start"], pl["deny_count"], rg):
        return ResultCode.END_USER_SERVICE_DENIED
    if pl["all_rgs"] == 0 and not _in_list(T.rated_rgs, pl["rg_start"], pl["rg_count"], rg):
        return ResultCode.RATING_FAILED
    return 0


@njit(cache=_CACHE, _nrt=False, inline='always')
def _local_sec(T, subs, row, t):
    """Local seconds since midnight at epoch time `t`."""
    off = T.zones[_zone(T, subs, row)]["offset"]
    return (np.int64(np.floor(t)) + off) % 86400


@njit(cache=_CACHE, _nrt=False, inline='always')
def _period(T, subs, row):
    s = subs[row]
    pl = T.plans[s["plan"]]
    zn = T.zones[_zone(T, subs, row)]
    return period_of(pl["period_kind"], pl["reset"], pl["period_days"], pl["period_anchor"],
                     s["anchor"], zn["day"], zn["year"], zn["month"], zn["mday"])


@njit(cache=_CACHE, _nrt=False, inline='always')
def _period_end(T, subs, row):
    """Epoch time the row's current period ends."""
    _, next_day = _period(T, subs, row)
    return float(next_day * 86400 - T.zones[_zone(T, subs, row)]["offset"])


@njit(cache=_CACHE, _nrt=False, inline='always')
def _add_pack(T, subs, row, d, now):
    """Put pack definition `d` on the row (a shared pack on its pool row);
    returns the slot, or -1 when every slot is taken."""
    if T.packs[d]["shared"]:
        row = subs[row]["pool"]
    s = subs[row]
    slot = -1
    for k in range(PACKS):
        if s["k_def"][k] < 0 or (s["k_until"][k] <= now and s["k_res"][k] == 0):
            slot = k
            break
    if slot < 0:
        return -1
    s["k_def"][slot] = d
    s["k_vol"][slot] = T.packs[d]["volume"]
    s["k_used"][slot] = 0
    s["k_res"][slot] = 0
    s["k_from"][slot] = now
    days = T.packs[d]["days"]
    s["k_until"][slot] = now + days * 86400.0 if days > 0 else _period_end(T, subs, row)
    return slot


@njit(cache=_CACHE, _nrt=False, inline='always')
def _rollover(T, subs, row, now):
    """Start the row's new period: counters to zero, caps and reopen reset,
    expired packs dropped, a trial pack for a new or zero-usage subscriber."""
    s = subs[row]
    today = T.zones[_zone(T, subs, row)]["day"]
    if s["period_day"] == today and s["period"] != NEVER:
        return                             # periods turn only at local midnight
    pid, _ = _period(T, subs, row)
    s["period_day"] = today
    if s["period"] == pid:
        return
    fresh = s["period"] == NEVER or s["total_used"] == 0
    s["period"] = pid
    for i in range(PLAN_BUCKETS):
        s["b_used"][i] = 0
    s["over_used"] = 0
    s["spent"] = 0
    s["total_used"] = 0
    s["pool_used"] = 0
    s["notified"] = 0
    s["reopened"] = 0
    for k in range(PACKS):
        if s["k_def"][k] >= 0 and s["k_until"][k] <= now and s["k_res"][k] == 0:
            s["k_def"][k] = -1
    trial = T.plans[s["plan"]]["trial"]
    if fresh and trial >= 0:
        _add_pack(T, subs, row, trial, now)


# ---------------------------------------------------------------- money
@njit(cache=_CACHE, _nrt=False, inline='always')
def _context_ok(T, r, subs, row, ctx):
    """Does the rate's context hold: APN, RAT type, roaming, and the
    subscriber's customer type, terminal type and partner."""
    s = subs[row]
    for k in range(5):
        n = r["cond_count"][k]
        if n < 0:
            continue
        if k == 0:
            v = ctx[0]
        elif k == 1:
            v = np.int64(ctx[1])
        elif k == 2:
            v = np.int64(s["customer_type"])
        elif k == 3:
            v = np.int64(s["terminal_type"])
        else:
            v = np.int64(s["partner"])
        if not _in_list(T.cond, r["cond_start"][k], n, v):
            return False
    if r["roaming"] >= 0:
        pl = T.plans[s["plan"]]
        if ctx[2] < 0 or pl["home_count"] == 0:
            return False                     # unknown: neither at home nor roaming
        home = _in_list(T.cond, pl["home_start"], pl["home_count"], ctx[2])
        if home == (r["roaming"] == 1):
            return False
    return True


@njit(cache=_CACHE, _nrt=False, inline='always')
def _rate(T, subs, row, ctx, rg, sec):
    """(tariff, draws from buckets, refused) for this traffic now: tariff
    FREE_RATE for zero-rated traffic, -1 when the plan has no tariff. The
    first of the plan's rates whose conditions hold applies."""
    pl = T.plans[subs[row]["plan"]]
    for i in range(pl["rate_start"], pl["rate_start"] + pl["rate_count"]):
        r = T.rates[i]
        if r["rg_count"] >= 0 and not _in_list(T.rate_rgs, r["rg_start"], r["rg_count"], rg):
            continue
        if not _in_hours(r["hour_from"], r["hour_to"], sec):
            continue
        if not _context_ok(T, r, subs, row, ctx):
            continue
        return r["tariff"], r["buckets"] != 0, r["deny"] != 0
    return pl["tariff"], True, False


@njit(cache=_CACHE, _nrt=False, inline='always')
def _mode(pl, ti, buckets):
    """What happens to traffic no bucket covers: zero-rated traffic is free,
    a rate that bypasses the buckets charges its tariff, else the plan decides."""
    if ti == FREE_RATE:
        return FREE
    if not buckets and ti >= 0:
        return CHARGE
    return pl["after_bundle"]


@njit(cache=_CACHE, _nrt=False, inline='always')
def _caps_active(pl, payer_row):
    return not (pl["reopen"] and payer_row["reopened"])


@njit(cache=_CACHE, _nrt=False, inline='always')
def _debit_money(T, subs, row, ti, buckets, octets, m):
    """Charge `octets` no bucket covered, at tariff `ti`, to the payer."""
    pl = T.plans[subs[row]["plan"]]
    if _mode(pl, ti, buckets) != CHARGE or ti < 0:
        return                 # free, throttled, stopped, or no tariff for it (a deny rate)
    payer = subs[row]["payer"]
    py = subs[payer]
    charge = _cost(T, ti, py["over_used"], octets)
    if not T.tariffs[ti]["free"]:
        py["over_used"] = sat_add(py["over_used"], octets)
    if pl["fee_cap"] >= 0 and _caps_active(pl, py):
        room = pl["fee_cap"] - py["spent"]
        room = room if room > 0 else 0
        if charge > room:
            charge = room                  # never charged beyond the fee cap
    py["balance"] = sat_sub(py["balance"], charge)
    py["spent"] = sat_add(py["spent"], charge)
    m["charged"] = sat_add(m["charged"], charge)


@njit(cache=_CACHE, _nrt=False, inline='always')
def _debit(T, subs, row, ctx, rg, t, used, m, hc, hv):
    """Reported usage: buckets first, then money; rated as of time `t`."""
    sec = _local_sec(T, subs, row, t)
    ti, buckets, _ = _rate(T, subs, row, ctx, rg, sec)
    got = 0
    if buckets:
        got, _, _ = _walk(T, subs, row, rg, sec, t, used, hc, hv, False)
    m["from_bundle"] += got
    subs[row]["total_used"] = sat_add(subs[row]["total_used"], used)
    if used - got > 0:
        _debit_money(T, subs, row, ti, buckets, used - got, m)


# ---------------------------------------------------------------- grants
@njit(cache=_CACHE, _nrt=False, inline='always')
def _ceiling_room(T, subs, row, want):
    """(want within the plan's absolute ceiling, whether the ceiling is what
    limits it); want 0 when the ceiling is reached."""
    s = subs[row]
    ceiling = T.plans[s["plan"]]["ceiling"]
    if ceiling < 0:
        return want, False
    room = ceiling - s["total_used"] - s["total_res"]
    room = room if room > 0 else 0
    return (room, True) if room <= want else (want, False)


@njit(cache=_CACHE, _nrt=False, inline='always')
def _grant(T, subs, row, ctx, rg, now, want, hc, hv, out):
    """Reserve up to `want` octets now. Holds go to hc/hv; `out` (a GRANT
    record) receives what was granted and held; the caller keeps the bucket
    holds and applies the rest with `_hold`. Returns granted."""
    for k in range(HOLDS):
        hc[k] = -1
        hv[k] = 0
    _clear_grant(out)
    s = subs[row]
    pl = T.plans[s["plan"]]
    reason = 0
    fui = FUI_NONE
    want, at_ceiling = _ceiling_room(T, subs, row, want)
    if want == 0 and at_ceiling:
        out["fui"], out["reason"] = FUI_TERMINATE, R_CEILING
        return 0
    sec = _local_sec(T, subs, row, now)
    ti, buckets, _ = _rate(T, subs, row, ctx, rg, sec)
    got, pool, full = 0, 0, 0
    if buckets:
        got, pool, full = _walk(T, subs, row, rg, sec, now, want, hc, hv, True)
    rem = want - got
    over, money = 0, 0
    if rem > 0 and full == 0:
        mode = _mode(pl, ti, buckets)
        if mode == CHARGE and ti < 0:
            mode = STOP
        if mode == CHARGE:
            py = subs[s["payer"]]
            free_tariff = T.tariffs[ti]["free"] != 0
            basis = py["over_used"] + py["over_res"]
            credit = BIG if pl["postpaid"] else py["balance"] - py["res_money"]
            v_credit = _affordable(T, ti, basis, credit, rem)
            v_cap = rem
            capped = _caps_active(pl, py) and not free_tariff and pl["cap_action"] != FREE
            if capped and pl["fee_cap"] >= 0:
                v_cap = _affordable(T, ti, basis, pl["fee_cap"] - py["spent"] - py["res_money"], rem)
            if capped and pl["volume_cap"] >= 0:
                room = pl["volume_cap"] - py["over_used"] - py["over_res"]
                room = room if room > 0 else 0
                v_cap = room if room < v_cap else v_cap
            v = v_credit if v_credit < v_cap else v_cap
            charged = True
            if v < rem:
                if v_cap <= v_credit:
                    reason |= R_CAP
                    if pl["cap_action"] == THROTTLE:
                        fui = FUI_RESTRICT
                        if v == 0 and got == 0:
                            v, charged = rem, False     # capped: throttled quota from now on
                            reason |= R_THROTTLED
                    else:
                        fui = FUI_TERMINATE
                else:
                    reason |= R_CREDIT
                    fui = FUI_TERMINATE
            if charged:
                money = _cost(T, ti, basis, v)
                if pl["fee_cap"] >= 0 and _caps_active(pl, py):
                    room = pl["fee_cap"] - py["spent"] - py["res_money"]
                    room = room if room > 0 else 0
                    money = room if money > room else money
                over = 0 if free_tariff else v
            got += v
        elif mode == THROTTLE:
            fui = FUI_RESTRICT         # the bundle ends here: throttled after these units
            if got == 0:
                got = rem              # throttled quota, free
                reason |= R_THROTTLED
        elif mode == STOP:
            fui = FUI_TERMINATE
            if got == 0:
                reason |= R_CREDIT
        else:
            got += rem
    if at_ceiling and got == want:
        fui = FUI_TERMINATE
        reason |= R_CEILING
    out["granted"], out["money"], out["over"], out["total"] = got, money, over, got
    out["pool"], out["fui"], out["reason"] = pool, fui, reason
    return got


@njit(cache=_CACHE, _nrt=False, inline='always')
def _clear_grant(out):
    out["granted"] = out["money"] = out["over"] = out["total"] = 0
    out["pool"] = out["fui"] = out["reason"] = 0


@njit(cache=_CACHE, _nrt=False, inline='always')
def _quote(T, subs, row, ctx, rg, now, want, hc, hv):
    """What `want` octets would cost now, buckets first (a price enquiry):
    the walk's holds are given back at once, and only they (hc/hv may hold
    an earlier grant's, which its session slot keeps)."""
    for k in range(HOLDS):
        hc[k] = -1
        hv[k] = 0
    pl = T.plans[subs[row]["plan"]]
    sec = _local_sec(T, subs, row, now)
    ti, buckets, _ = _rate(T, subs, row, ctx, rg, sec)
    got = 0
    if buckets:
        got, _, _ = _walk(T, subs, row, rg, sec, now, want, hc, hv, True)
        _unhold(subs, row, hc, hv, 0, 0, 0)
    if _mode(pl, ti, buckets) != CHARGE:
        return 0
    py = subs[subs[row]["payer"]]
    return _cost(T, ti, py["over_used"] + py["over_res"], want - got)


@njit(cache=_CACHE, _nrt=False, inline='always')
def _hold(subs, row, out):
    py = subs[row]["payer"]
    subs[py]["res_money"] += out["money"]
    subs[py]["over_res"] += out["over"]
    subs[row]["total_res"] += out["total"]


@njit(cache=_CACHE, _nrt=False, inline='always')
def _unhold(subs, row, hc, hv, money, over, total):
    """Give back what a grant held (its bucket holds, money and counts)."""
    for k in range(HOLDS):
        if hc[k] >= 0:
            _cand_add(subs, row, hc[k], 0, -hv[k])
            hc[k] = -1
            hv[k] = 0
    py = subs[row]["payer"]
    subs[py]["res_money"] -= money
    subs[py]["over_res"] -= over
    subs[row]["total_res"] -= total


@njit(cache=_CACHE, _nrt=False, inline='always')
def _release(subs, sessions, spons, row, sess, slot):
    x = sessions[sess]
    k = x["sp"][slot]
    if k >= 0:
        spons[k]["res_octets"] -= x["sp_octets"][slot]
        spons[k]["res_money"] -= x["sp_money"][slot]
        x["sp"][slot] = -1
        x["sp_octets"][slot] = 0
        x["sp_money"][slot] = 0
    # everything granted counts toward the ceiling (total_res), bucket or not
    _unhold(subs, row, x["hold_c"][slot], x["hold_v"][slot], x["res_money"][slot], x["res_over"][slot],
            x["granted"][slot])
    x["res_money"][slot] = 0
    x["res_over"][slot] = 0
    x["granted"][slot] = 0


@njit(cache=_CACHE, _nrt=False, inline='always')
def _find_slot(sessions, sess, rg):
    for k in range(SLOTS):
        if sessions[sess]["rg"][k] == rg:
            return k
    return -1


@njit(cache=_CACHE, _nrt=False, inline='always')
def _validity(T, subs, row, now, hc):
    """Validity-Time: the plan's, cut at the next tariff or bucket band edge
    and at the end of a pack held, so usage is reported before the rate changes."""
    pl = T.plans[subs[row]["plan"]]
    v = pl["validity"]
    sec = _local_sec(T, subs, row, now)
    for e in range(pl["edge_start"], pl["edge_start"] + pl["edge_count"]):
        d = (T.edges[e] - sec) % 86400
        if 0 < d < v:
            v = d
    for k in range(HOLDS):
        c = hc[k]
        if c >= 0 and c % 8 >= PLAN_BUCKETS:
            r = _cand_row(subs, row, c)
            left = subs[r]["k_until"][c % 8 - PLAN_BUCKETS] - now
            if 0 < left < v:
                v = int(np.ceil(left))
    return v


# ---------------------------------------------------------------- sponsors
@njit(cache=_CACHE, _nrt=False, inline='always')
def _sp_debit(T, subs, spons, row, ctx, rg, sid, t, used, m, hc, hv):
    """Reported usage: a contract that covers it pays first, within its
    budget; the rest goes to the contract's fallback (the subscriber's
    normal charging when it is CHARGE; refused or throttled traffic is not
    charged), or to normal charging when no contract covers it."""
    k = SP.contract_for(T, subs, row, ctx[0], rg, sid, t)
    if k < 0:
        _debit(T, subs, row, ctx, rg, t, used, m, hc, hv)
        return False
    SP.roll(T, spons, k)
    take, money = SP.room(T, spons, k, used)
    spons[k]["used"] = sat_add(spons[k]["used"], take)
    spons[k]["spent"] = sat_add(spons[k]["spent"], money)
    m["sponsor"] = k
    m["sponsored"] += take
    m["sponsor_charged"] += money
    subs[row]["total_used"] = sat_add(subs[row]["total_used"], take)
    if used - take > 0:
        if T.contracts[k]["fallback"] == CHARGE:
            _debit(T, subs, row, ctx, rg, t, used - take, m, hc, hv)
        else:
            subs[row]["total_used"] = sat_add(subs[row]["total_used"], used - take)
    return True


@njit(cache=_CACHE, _nrt=False, inline='always')
def _sp_grant(T, subs, spons, row, ctx, rg, sid, now, want, hc, hv, out, sp):
    """`_grant` with sponsorship: the contract's budget first, then its
    fallback. `sp` (a SPONSOR_HOLD record) receives what the sponsor holds."""
    sp["contract"], sp["octets"], sp["money"] = -1, 0, 0
    k = SP.contract_for(T, subs, row, ctx[0], rg, sid, now)
    if k < 0:
        return _grant(T, subs, row, ctx, rg, now, want, hc, hv, out)
    SP.roll(T, spons, k)
    want, at_ceiling = _ceiling_room(T, subs, row, want)
    v, money = SP.room(T, spons, k, want)
    spons[k]["res_octets"] += v
    spons[k]["res_money"] += money
    sp["contract"], sp["octets"], sp["money"] = k, v, money
    c = T.contracts[k]
    granted = v
    if want - v > 0 and c["fallback"] == CHARGE:
        g = _grant(T, subs, row, ctx, rg, now, want - v, hc, hv, out)
        if g == 0 and v > 0:
            out["fui"] = FUI_TERMINATE        # the sponsor's part is all there is
        granted = v + g
    else:
        for i in range(HOLDS):
            hc[i] = -1
            hv[i] = 0
        _clear_grant(out)
        if want - v > 0 and c["fallback"] == STOP:
            out["fui"] = FUI_TERMINATE        # the traffic is refused once the budget is spent
        elif want - v > 0:                # THROTTLE
            out["fui"] = FUI_RESTRICT
            if v == 0:
                granted = want - v        # throttled quota, free
    if at_ceiling and granted == want:
        out["fui"] = FUI_TERMINATE
    out["granted"] = granted
    out["total"] = granted
    return granted


@njit(cache=_CACHE, _nrt=False, inline='always')
def _sp_unhold(spons, sp):
    if sp["contract"] >= 0:
        spons[sp["contract"]]["res_octets"] -= sp["octets"]
        spons[sp["contract"]]["res_money"] -= sp["money"]
        sp["contract"] = -1


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
