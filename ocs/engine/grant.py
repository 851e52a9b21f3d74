"""Money, debits and grants (RFC 4006 5: reported usage debited, then a
new reservation), for one MSCC: the rate of the traffic in its context,
the buckets in order, then the money stage within the balance and the caps;
a grant's holds and its GRANT record; sponsor contracts first. Inlined into
the charging kernel (kernel.py)."""
from __future__ import annotations

import os

import numpy as np
from numba import njit

from . import sponsor as SP
from .account import _local_sec
from .buckets import _cand_add, _cand_row, _in_hours, _in_list, _walk
from .notices import R_CAP, R_CEILING, R_CREDIT, R_THROTTLED
from .tables import (CHARGE, FREE, FREE_RATE, FUI_NONE, FUI_RESTRICT, FUI_TERMINATE, HOLDS, PLAN_BUCKETS,
                     SLOTS, STOP, THROTTLE)
from .tariff import BIG, _affordable, _cost, sat_add, sat_sub

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None

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
