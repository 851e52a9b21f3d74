"""Thresholds and daily summaries: announced once per period (or day), in
the batch that crosses them (docs/rules.md#thresholds-and-notifications).
Compiled without numba's reference counting, like the kernel.
"""
from __future__ import annotations

import os

import numpy as np
from numba import njit

from .calendar import zone_of as _zone
from .tables import T_BUCKET, T_CAP, T_CEILING, T_CREDIT, T_DAILY, T_SPENT, T_THROTTLED

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None
# why a grant stopped short: the kernel's reasons, which some thresholds announce
R_CREDIT, R_CAP, R_CEILING, R_THROTTLED = 1, 2, 4, 8


@njit(cache=_CACHE, _nrt=False)
def _thresholds(T, subs, row, reasons, events, ne):
    """Announce each threshold the row crossed, once per period."""
    s = subs[row]
    p = s["plan"]
    pl = T.plans[p]
    for k in range(pl["thr_count"]):
        bit = np.int64(1) << k
        if s["notified"] & bit:
            continue
        th = T.thresholds[pl["thr_start"] + k]
        kind = th["kind"]
        value = np.int64(0)
        hit = False
        if kind == T_BUCKET:
            vol = T.buckets[pl["bucket_start"] + th["bucket"]]["volume"]
            value = s["b_used"][th["bucket"]]
            hit = vol > 0 and value * 100 >= th["value"] * vol
        elif kind == T_SPENT:
            value = s["spent"]
            hit = value >= th["value"]
        elif kind == T_CAP:
            hit = (reasons & R_CAP) != 0
            value = s["spent"]
        elif kind == T_THROTTLED:
            hit = (reasons & R_THROTTLED) != 0
            value = s["total_used"]
        elif kind == T_CEILING:
            hit = (reasons & R_CEILING) != 0
            value = s["total_used"]
        elif kind == T_CREDIT:
            hit = (reasons & R_CREDIT) != 0
            value = s["balance"]
        if hit and ne < events.shape[0]:
            s["notified"] |= bit
            ev = events[ne]
            ev["sub"], ev["plan"], ev["threshold"], ev["value"] = row, p, k, value
            ne += 1
    return ne


@njit(cache=_CACHE, _nrt=False)
def _daily(T, subs, row, events, ne):
    """Close the row's day if its local date moved on: a daily-summary event
    (when the plan declares one) for a day with usage, and fresh counters."""
    s = subs[row]
    today = T.zones[_zone(T, subs, row)]["day"]
    if s["day"] == today:
        return ne
    if s["day_used"] > 0 or s["day_spent"] != 0:
        pl = T.plans[s["plan"]]
        for k in range(pl["thr_count"]):
            if T.thresholds[pl["thr_start"] + k]["kind"] == T_DAILY:
                if ne >= events.shape[0]:
                    return ne                # no room: the day is closed in the next batch
                ev = events[ne]
                ev["sub"], ev["plan"], ev["threshold"] = row, s["plan"], k
                ev["value"], ev["money"], ev["day"] = s["day_used"], s["day_spent"], s["day"]
                ne += 1
                break
    s["day"] = today
    s["day_used"] = 0
    s["day_spent"] = 0
    return ne


@njit(cache=_CACHE, _nrt=False)
def _daily_sweep(T, subs, n, events, dirty):
    """At local midnight: close every row's day (the summaries of rows that
    were not charged since)."""
    ne = 0
    nd = 0
    for row in range(n):
        if subs[row]["day"] != T.zones[_zone(T, subs, row)]["day"]:
            if subs[row]["day_used"] == 0 and subs[row]["day_spent"] == 0:
                # nothing to sum up: not worth a journal row (a stale day with
                # zero counters is harmless after a recovery)
                subs[row]["day"] = T.zones[_zone(T, subs, row)]["day"]
                continue
            if ne >= events.shape[0] or nd >= dirty.shape[0]:
                break
            ne = _daily(T, subs, row, events, ne)
            dirty[nd] = row
            nd += 1
    return ne, nd
