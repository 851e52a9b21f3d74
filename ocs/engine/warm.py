"""The engine's kernels compiled (or loaded from numba's cache) before the
server accepts a connection, with the types the hot path passes: a kernel
first compiled by a batch would stall the charging loop for seconds.
`ocs/kernels.py` runs every package's warm-up; each function here names
the dispatchers it compiles, so a cold cache can be told from a warm one.

Every call works on scratch rows, never on the store's.
"""
from __future__ import annotations

import numpy as np

from . import kernel
from .kernel import Tables
from .tables import MSCC, REQUEST, SESSION, SPONSOR, SUBSCRIBER, new_table

CHARGING = (kernel._charge,)
SESSIONS = (kernel._expire, kernel._rebuild, kernel._close_session)
CALENDAR = ()                   # small kernels, compiled together in seconds: no cache check


def _scratch():
    return new_table(SUBSCRIBER, 1), new_table(SESSION, 1), np.zeros(1, SPONSOR)


def charging(tables: Tables) -> None:
    """Rating, reservations, caps, sponsors: the batch kernel."""
    subs, sessions, spons = _scratch()
    kernel.charge_batch(np.zeros(0, REQUEST), np.zeros(0, MSCC), subs, sessions, spons, tables, 0.0)


def sessions() -> None:
    """Tcc expiry, recovery (holds recounted), release."""
    subs, sessions, spons = _scratch()
    kernel.expire_sessions(subs, sessions, spons, 0.0, 1)
    kernel.rebuild_reservations(subs, sessions, spons, 0)
    kernel.close_session(subs, sessions, spons, 0)


def calendar(tables: Tables) -> None:
    """The kernels of rarer moments (midnight, an operator's pack or
    query)."""
    subs, _, _ = _scratch()
    kernel.daily_sweep(subs, tables, 0, limit=1)
    if len(tables.plans):
        subs[0]["plan"], subs[0]["pool"], subs[0]["payer"] = 0, 0, 0
        kernel.period_bounds(subs, tables, 0)
        kernel.rollover(subs, tables, 0, 0.0)
        if len(tables.packs):
            kernel.add_pack(subs, tables, 0, 0, 0.0)
