"""Sponsored data: a contract pays for matching traffic first, within its
budget per period; what the budget cannot cover goes to the contract's
fallback (the subscriber's normal charging, a refusal, or throttling).

The request that exhausts a budget is split exactly: the sponsor's part up
to the budget (whole tariff units of a money budget), the rest to the
fallback. Compiled with numba like the kernel, without reference counting.
"""
from __future__ import annotations

import os

from numba import njit

from .calendar import period_of

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None
NEVER = -(1 << 62)


@njit(cache=_CACHE, _nrt=False)
def _listed(cond, start, count, v):
    if count < 0:
        return True
    for k in range(start, start + count):
        if cond[k] == v:
            return True
    return False


@njit(cache=_CACHE, _nrt=False)
def contract_for(T, subs, row, apn, rg, sid, t):
    """The first contract that pays for this traffic of this subscriber at
    time t, or -1."""
    plan = subs[row]["plan"]
    for k in range(T.contracts.shape[0] if T.contracts[0]["unit"] > 0 else 0):
        c = T.contracts[k]
        if not (c["valid_from"] <= t < c["valid_until"]):
            continue
        by_rg = c["rg_count"] > 0 and _listed(T.cond, c["rg_start"], c["rg_count"], rg)
        by_sid = c["sid_count"] > 0 and sid >= 0 and _listed(T.cond, c["sid_start"], c["sid_count"], sid)
        if not (by_rg or by_sid):
            continue
        if not _listed(T.cond, c["apn_start"], c["apn_count"], apn):
            continue
        if not _listed(T.cond, c["plan_start"], c["plan_count"], plan):
            continue
        if not _listed(T.elig, c["elig_start"], c["elig_count"], row):
            continue
        return k
    return -1


@njit(cache=_CACHE, _nrt=False)
def roll(T, spons, k):
    """Start the contract's new budget period when its period moved on."""
    c = T.contracts[k]
    zn = T.zones[c["zone"]]
    pid, _ = period_of(c["period_kind"], 0, c["period_days"], c["period_anchor"], 0,
                       zn["day"], zn["year"], zn["month"], zn["mday"])
    sp = spons[k]
    if sp["period"] != pid:
        sp["period"] = pid
        sp["used"] = 0
        sp["spent"] = 0


@njit(cache=_CACHE, _nrt=False)
def _ceil_div(a, b):
    return -((-a) // b)


@njit(cache=_CACHE, _nrt=False)
def room(T, spons, k, want):
    """(octets, micro-units): the most of `want` the budget pays for now."""
    c = T.contracts[k]
    sp = spons[k]
    v = want
    if c["budget_volume"] >= 0:
        left = c["budget_volume"] - sp["used"] - sp["res_octets"]
        v = left if left < v else v
    if c["budget_money"] >= 0 and c["price"] > 0:
        left = c["budget_money"] - sp["spent"] - sp["res_money"]
        can = (left // c["price"]) * c["unit"] if left > 0 else 0
        v = can if can < v else v
    v = v if v > 0 else 0
    return v, _ceil_div(v, c["unit"]) * c["price"] if v > 0 else 0
