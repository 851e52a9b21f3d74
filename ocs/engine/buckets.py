"""Buckets and packs: which of them a piece of traffic may draw from, in the
plan's order, and taking from them as usage or as holds (docs/rules.md,
"Buckets and their order"). Candidate numbers: 0-3 the row's own plan
buckets, 4-7 its own packs, 8-11 the pool row's plan buckets, 12-15 the
pool row's packs. Compiled without numba's reference counting.
"""
from __future__ import annotations

import os

from numba import njit

from .tables import ANY_PACK, HOLDS, PACK_BASE, PACKS, PLAN_BUCKETS

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None


@njit(cache=_CACHE, _nrt=False)
def _in_list(lst, start, count, rg):
    for k in range(start, start + count):
        if lst[k] == rg:
            return True
    return False


@njit(cache=_CACHE, _nrt=False)
def _in_hours(frm, to, sec):
    if frm < 0:
        return True
    if frm <= to:
        return frm <= sec < to
    return sec >= frm or sec < to          # a band across midnight, e.g. 23:00-07:00


@njit(cache=_CACHE, _nrt=False)
def _covers(T, bk, rg, sec):
    if bk["rg_count"] >= 0 and not _in_list(T.bucket_rgs, bk["rg_start"], bk["rg_count"], rg):
        return False
    return _in_hours(bk["hour_from"], bk["hour_to"], sec)


@njit(cache=_CACHE, _nrt=False)
def _cand_row(subs, row, c):
    return row if c < 8 else subs[row]["pool"]


@njit(cache=_CACHE, _nrt=False)
def _cand_free(T, subs, row, c):
    """Octets candidate `c` can still give (neither used nor held)."""
    r = _cand_row(subs, row, c)
    s = subs[r]
    i = c % 8
    if i < PLAN_BUCKETS:
        pl = T.plans[s["plan"]]
        avail = T.buckets[pl["bucket_start"] + i]["volume"] - s["b_used"][i] - s["b_res"][i]
    else:
        k = i - PLAN_BUCKETS
        avail = s["k_vol"][k] - s["k_used"][k] - s["k_res"][k]
    if c >= 8 and subs[row]["pool_cap"] >= 0:
        room = subs[row]["pool_cap"] - subs[row]["pool_used"] - subs[row]["pool_res"]
        if room < avail:
            avail = room
    return avail if avail > 0 else 0


@njit(cache=_CACHE, _nrt=False)
def _cand_add(subs, row, c, used, held):
    """Add to candidate `c`'s used and held octets (negative: give back)."""
    r = _cand_row(subs, row, c)
    i = c % 8
    if i < PLAN_BUCKETS:
        subs[r]["b_used"][i] += used
        subs[r]["b_res"][i] += held
    else:
        subs[r]["k_used"][i - PLAN_BUCKETS] += used
        subs[r]["k_res"][i - PLAN_BUCKETS] += held
    if c >= 8:
        subs[row]["pool_used"] += used
        subs[row]["pool_res"] += held


@njit(cache=_CACHE, _nrt=False)
def _pack_ok(T, subs, r, k, d, named, pl, rg, sec, t):
    s = subs[r]
    kd = s["k_def"][k]
    if kd < 0 or (d >= 0 and kd != d):
        return False
    if d < 0 and named:
        # ANY_PACK: only packs the order does not name
        for e in range(pl["order_start"], pl["order_start"] + pl["order_count"]):
            if T.order[e] == PACK_BASE - kd:
                return False
    if not (s["k_from"][k] <= t < s["k_until"][k]):
        return False
    return _covers(T, T.packs[kd], rg, sec)


@njit(cache=_CACHE, _nrt=False)
def _next_pack(subs, r, pu, pf, pk):
    """The row's pack slot after (pu, pf, pk) in (valid until, valid from,
    slot) order: packs that expire first are used first. -1 when none."""
    s = subs[r]
    best = -1
    bu, bf = 0.0, 0.0
    for k in range(PACKS):
        if s["k_def"][k] < 0:
            continue
        u, f = s["k_until"][k], s["k_from"][k]
        after = u > pu or (u == pu and (f > pf or (f == pf and k > pk)))
        if after and (best < 0 or u < bu or (u == bu and (f < bf or (f == bf and k < best)))):
            best, bu, bf = k, u, f
    return best


@njit(cache=_CACHE, _nrt=False)
def _take(T, subs, row, c, want, got, hc, hv, nh, hold):
    """Take what candidate `c` can give towards `want`: (taken, holds used,
    1 if a hold was needed and none was left)."""
    take = _cand_free(T, subs, row, c)
    if take > want - got:
        take = want - got
    if take <= 0:
        return 0, nh, 0
    if hold:
        if nh == HOLDS:
            return 0, nh, 1
        hc[nh] = c
        hv[nh] = take
        nh += 1
        _cand_add(subs, row, c, 0, take)
    else:
        _cand_add(subs, row, c, take, 0)
    return take, nh, 0


@njit(cache=_CACHE, _nrt=False)
def _walk(T, subs, row, rg, sec, t, want, hc, hv, hold):
    """Take up to `want` octets from the buckets in the plan's order: as
    usage (hold=False) or as holds recorded in hc/hv (hold=True). Returns
    (octets taken, octets of them from the pool, 1 if the holds ran out)."""
    pl = T.plans[subs[row]["plan"]]
    pool = subs[row]["pool"]
    got = 0
    from_pool = 0
    nh = 0
    for e in range(pl["order_start"], pl["order_start"] + pl["order_count"]):
        if got >= want:
            break
        entry = T.order[e]
        if entry >= 0:
            bk = T.buckets[pl["bucket_start"] + entry]
            if not _covers(T, bk, rg, sec):
                continue
            c = entry + 8 if bk["shared"] else entry
            take, nh, full = _take(T, subs, row, c, want, got, hc, hv, nh, hold)
            if full:
                return got, from_pool, 1
            got += take
            from_pool += take if c >= 8 else 0
            continue
        d = PACK_BASE - entry if entry <= PACK_BASE else -1
        for side in range(2):            # the row's own packs, then its pool's shared ones
            r = row if side == 0 else pool
            k = _next_pack(subs, r, -1.0, -1.0, -1)
            while k >= 0 and got < want:
                kd = subs[r]["k_def"][k]
                if T.packs[kd]["shared"] == side and _pack_ok(T, subs, r, k, d, entry == ANY_PACK, pl, rg, sec, t):
                    c = side * 8 + PLAN_BUCKETS + k
                    take, nh, full = _take(T, subs, row, c, want, got, hc, hv, nh, hold)
                    if full:
                        return got, from_pool, 1
                    got += take
                    from_pool += take if c >= 8 else 0
                k = _next_pack(subs, r, subs[r]["k_until"][k], subs[r]["k_from"][k], k)
    return got, from_pool, 0
