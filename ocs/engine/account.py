"""A subscriber's account through time: whether its plan rates a rating
group, its local time, its period (the bundle's month, week or days), packs
given, and rolling its counters into a new period (`_rollover`). Inlined
into the charging kernel (kernel.py)."""
from __future__ import annotations

import os

import numpy as np
from numba import njit

from .buckets import _in_list
from .calendar import period_of, zone_of as _zone
from ..codes import ResultCode
from .tables import NEVER, PACKS, PLAN_BUCKETS

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
