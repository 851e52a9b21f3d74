"""Money for volume: flat tariffs and ladders (tables.TARIFF, tables.STEP).

A ladder prices the period's running total: what `volume` octets charged
this period cost in all; a report pays the difference it makes. A flat
tariff with PER_REPORT rounding rounds each report up to whole units.
Compiled without numba's reference counting, like the kernel.
"""
from __future__ import annotations

import os

from numba import njit

from .tables import CUMULATIVE

_CACHE = os.environ.get("OCS_NUMBA_NOCACHE") is None
BIG = 1 << 62                 # no limit (a postpaid balance); also where money and volume saturate


@njit(cache=_CACHE, _nrt=False)
def _ceil_div(a, b):
    return -((-a) // b)


@njit(cache=_CACHE, _nrt=False)
def sat_add(a, b):
    """a + b for b >= 0, at most BIG: a counter never wraps (a >= -BIG)."""
    return a + b if b < BIG - a else BIG


@njit(cache=_CACHE, _nrt=False)
def sat_sub(a, b):
    """a - b for b >= 0, at least -BIG."""
    return a - b if b < a + BIG else -BIG


@njit(cache=_CACHE, _nrt=False)
def _units_price(units, price):
    """units * price (both >= 0), at most BIG."""
    if price > 0 and units > BIG // price:
        return BIG
    return units * price


@njit(cache=_CACHE, _nrt=False)
def _ladder(T, ti, volume):
    """What `volume` octets charged this period cost in all (a ladder)."""
    tf = T.tariffs[ti]
    k = tf["step_start"]
    for j in range(tf["step_start"], tf["step_start"] + tf["step_count"]):
        if T.steps[j]["start"] <= volume:
            k = j
    st = T.steps[k]
    extra = volume - st["start"]
    if st["price"] > 0 and extra > 0:
        return sat_add(st["base"], _units_price(_ceil_div(extra, st["unit"]), st["price"]))
    return st["base"]


@njit(cache=_CACHE, _nrt=False)
def _cost(T, ti, basis, octets):
    """Money for `octets` more, `basis` octets having been charged already."""
    if ti < 0 or octets <= 0:
        return 0
    tf = T.tariffs[ti]
    if tf["rounding"] == CUMULATIVE:
        return _ladder(T, ti, sat_add(basis, octets)) - _ladder(T, ti, basis)
    st = T.steps[tf["step_start"]]
    return _units_price(_ceil_div(octets, st["unit"]), st["price"])


@njit(cache=_CACHE, _nrt=False)
def _affordable(T, ti, basis, money, want):
    """The most octets (<= want) that cost at most `money`, `basis` octets
    having been charged already."""
    if ti < 0 or T.tariffs[ti]["free"] or want <= 0 or money >= BIG:
        return want                        # BIG: no limit (postpaid)
    if money <= 0:
        return 0
    tf = T.tariffs[ti]
    if tf["rounding"] != CUMULATIVE:
        st = T.steps[tf["step_start"]]
        can = (money // st["price"]) * st["unit"]
        return want if can >= want else can
    # the ladder's total is non-decreasing: find the largest V with L(V) <= budget
    budget = _ladder(T, ti, basis) + money
    best = basis
    first, last = tf["step_start"], tf["step_start"] + tf["step_count"]
    for j in range(first, last):
        st = T.steps[j]
        end = T.steps[j + 1]["start"] if j + 1 < last else BIG
        if end <= basis:
            continue
        lo = st["start"] if st["start"] > basis else basis
        if _ladder(T, ti, lo) > budget:
            break                          # a flat jump it cannot pay for
        if st["price"] == 0:
            top = end - 1
        else:
            top = st["start"] + ((budget - st["base"]) // st["price"]) * st["unit"]
            if top > end - 1:
                top = end - 1
        if top > best:
            best = top
        if top < end - 1:
            break
    got = best - basis
    return want if got >= want else got
