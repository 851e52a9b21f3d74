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

import numpy as np

from .diameter import fastcca, fastccr, message
from .engine import kernel
from .engine.tables import MSCC, REQUEST, SESSION, SPONSOR, SUBSCRIBER, new_table
from .rules.compile import RuleSet
from .store import dedup
from .feeds import usage_lines


@dataclass(frozen=True)
class Group:
    name: str
    run: Callable[[RuleSet], None]
    kernels: tuple          # the dispatchers `run` calls directly: their cache tells cold from warm


def _scratch():
    return new_table(SUBSCRIBER, 1), new_table(SESSION, 1), np.zeros(1, SPONSOR)


def _codec(rules: RuleSet) -> None:
    message.split_frames(bytearray(b"\x01\x00\x00\x14" + bytes(16)))
    buf, frames, msccs, _ = fastccr.decode_batch([bytes(20)], MSCC)
    fastccr.duplicate_keys(buf, frames)
    fastcca.encode_batch(buf, frames, np.zeros(1, REQUEST), msccs, np.zeros(1, np.int64), b"", 0)


def _charging(rules: RuleSet) -> None:
    subs, sessions, spons = _scratch()
    kernel.charge_batch(np.zeros(0, REQUEST), np.zeros(0, MSCC), subs, sessions, spons, rules.tables, 0.0)


def _sessions(rules: RuleSet) -> None:
    subs, sessions, spons = _scratch()
    kernel.expire_sessions(subs, sessions, spons, 0.0, 1)
    kernel.rebuild_reservations(subs, sessions, spons, 0)
    kernel.close_session(subs, sessions, spons, 0)


def _calendar(rules: RuleSet) -> None:
    """The kernels of rarer moments (midnight, an operator's pack or
    query), on scratch rows."""
    subs, _, _ = _scratch()
    kernel.daily_sweep(subs, rules.tables, 0, limit=1)
    if len(rules.tables.plans):
        subs[0]["plan"], subs[0]["pool"], subs[0]["payer"] = 0, 0, 0
        kernel.period_bounds(subs, rules.tables, 0)
        kernel.rollover(subs, rules.tables, 0, 0.0)
        if len(rules.tables.packs):
            kernel.add_pack(subs, rules.tables, 0, 0, 0.0)


GROUPS = (
    Group("framing, CCR decoder, CCA encoder", _codec,
          (message._frame_ends, fastccr._decode_all, fastccr._write_keys, fastcca._encode)),
    Group("charging kernel (rating, reservations, caps, sponsors)", _charging, (kernel._charge,)),
    Group("sessions (Tcc expiry, recovery, release)", _sessions,
          (kernel._expire, kernel._rebuild, kernel._close_session)),
    Group("calendar (midnight sweep, periods, packs)", _calendar, ()),
    Group("duplicate cache", lambda rules: dedup.warm_up(), (dedup._insert, dedup._find, dedup._fingerprints)),
    Group("usage records", usage_lines.warm_up, (usage_lines._write_lines,)),
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
