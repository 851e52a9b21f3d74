"""Periods: which period a subscriber's counters belong to, and when it ends.

Local days are counted from 1970-01-01 in the subscriber's timezone (the
zone table is filled from zoneinfo before each batch, so the kernels never
consult a timezone database). Civil-date arithmetic after Howard Hinnant's
`days_from_civil`, which is exact over the proleptic Gregorian calendar.
"""
from __future__ import annotations

from datetime import date

from numba import njit

from .tables import ANNIVERSARY, DAYS, QUARTER

_CACHE = True
_EPOCH = date(1970, 1, 1)


def local_day(d: date) -> int:
    """A local date's day number, as the zone table and the rows hold it."""
    return (d - _EPOCH).days


@njit(cache=_CACHE, _nrt=False)
def civil(days):
    """Local day number -> (year, month, day)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d


@njit(cache=_CACHE, _nrt=False)
def day_number(y, m, d):
    """(year, month, day) -> local day number."""
    y = y - (1 if m <= 2 else 0)
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=_CACHE, _nrt=False)
def month_days(y, m):
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return day_number(ny, nm, 1) - day_number(y, m, 1)


@njit(cache=_CACHE, _nrt=False)
def _month_start(mi, anchor_day):
    """Local day a period that begins in month index `mi` starts on: the
    anchor's day of the month, or the month's last day when it is shorter."""
    y, m = mi // 12, mi % 12 + 1
    d = anchor_day if anchor_day < month_days(y, m) else month_days(y, m)
    return day_number(y, m, d)


@njit(cache=_CACHE, _nrt=False)
def period_of(kind, reset, length_days, plan_anchor, anchor, day, year, month, mday):
    """(period id, local day the next period starts) for local date
    (`day` = year-month-mday). `anchor` is the subscriber's activation day,
    used by anniversary resets."""
    if kind == DAYS:
        base = anchor if reset == ANNIVERSARY else plan_anchor
        n = (day - base) // length_days
        return n, base + (n + 1) * length_days
    span = 3 if kind == QUARTER else 1
    mi = year * 12 + month - 1
    ami, aday = 0, 1
    if reset == ANNIVERSARY:
        ay, am, ad = civil(anchor)
        ami, aday = ay * 12 + am - 1, ad
        if day < _month_start(mi, aday):
            mi -= 1
    n = (mi - ami) // span
    return n, _month_start(ami + (n + 1) * span, aday)


@njit(cache=_CACHE, _nrt=False)
def zone_of(T, subs, row):
    """The timezone (zone table index) of a subscriber row: its own, else its plan's."""
    z = subs[row]["zone"]
    return z if z >= 0 else T.plans[subs[row]["plan"]]["zone"]
