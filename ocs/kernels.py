"""Every numba kernel the server runs, compiled (or loaded from numba's
on-disk cache) before it accepts a connection: a kernel first compiled by
a batch would stall the charging loop for seconds.

numba compiles a function again for each new set of argument types
(read-only and writable arrays differ), so each group calls its kernels
with the types the hot path passes. `make install` runs them all once
(`ocs compile`, a line per group); `ocs serve` runs them again, which
with a warm cache takes about a second, and says so first when the cache
is cold (a changed source, another CPU, another numba).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable

from .diameter import warm as codec
from .engine import warm as engine
from .engine.tables import MSCC, REQUEST
from .feeds import usage_lines
from .rules.compile import RuleSet
from .store import dedup


@dataclass(frozen=True)
class Group:
    name: str
    run: Callable[[RuleSet], None]
    kernels: tuple          # the dispatchers `run` calls directly: their cache tells cold from warm


# Each package warms its own kernels; this is only their order and names.
GROUPS = (
    Group("framing, CCR decoder, CCA encoder", lambda rules: codec.warm_up(MSCC, REQUEST), codec.KERNELS),
    Group("charging kernel (rating, reservations, caps, sponsors)", lambda rules: engine.charging(rules.tables),
          engine.CHARGING),
    Group("sessions (Tcc expiry, recovery, release)", lambda rules: engine.sessions(), engine.SESSIONS),
    Group("calendar (midnight sweep, periods, packs)", lambda rules: engine.calendar(rules.tables),
          engine.CALENDAR),
    Group("duplicate cache", lambda rules: dedup.warm_up(), dedup.KERNELS),
    Group("usage records", usage_lines.warm_up, usage_lines.KERNELS),
)


def _cached(dispatcher) -> bool:
    """Whether numba's cache holds this function, compiled from its current
    source for this machine. Reads numba's cache index (its internals, at
    the locked numba version; tests/test_kernels.py holds it to the truth)."""
    if not hasattr(dispatcher, "py_func"):
        return True             # NUMBA_DISABLE_JIT: nothing is compiled
    cache_file = getattr(dispatcher._cache, "_cache_file", None)
    if cache_file is None:
        return False            # OCS_NUMBA_NOCACHE: compiled every time
    index = cache_file._load_index()     # {} when missing or stale (source stamp, numba version)
    magic = dispatcher.targetctx.codegen().magic_tuple()
    code = hashlib.sha256(dispatcher.py_func.__code__.co_code).hexdigest()
    return any(key[1] == magic and key[2][0] == code for key in index)


def cold_groups() -> list[Group]:
    """The groups with a kernel that numba's cache cannot supply."""
    return [g for g in GROUPS if not all(_cached(k) for k in g.kernels)]


def cache_dir() -> str:
    """Where numba keeps the kernels: under NUMBA_CACHE_DIR if set, else in
    the `__pycache__` beside each module (their common parent)."""
    dirs = [k._cache._cache_path for g in GROUPS for k in g.kernels if hasattr(k, "_cache")]
    return os.path.commonpath(dirs) if dirs else "(none: NUMBA_DISABLE_JIT)"


def warm_up(rules: RuleSet, report: Callable[[str, float, bool], None] | None = None) -> float:
    """Compile or load every group; `report(name, seconds, compiled)` after
    each. Returns the seconds taken."""
    started = time.monotonic()
    for g in GROUPS:
        misses = [_misses(k) for k in g.kernels]
        t = time.monotonic()
        g.run(rules)
        if report is not None:
            compiled = any(_misses(k) != m for k, m in zip(g.kernels, misses))
            report(g.name, time.monotonic() - t, compiled)
    return time.monotonic() - started


def _misses(dispatcher) -> int:
    return sum(dispatcher.stats.cache_misses.values()) if hasattr(dispatcher, "stats") else 0
