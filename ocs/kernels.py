"""Every numba kernel the server runs, compiled (or loaded from numba's
on-disk cache) before it accepts a connection: a kernel first compiled by
a batch would stall the charging loop for seconds.

numba compiles a function again for each new set of argument types
(read-only and writable arrays differ), so each group calls its kernels
with the types the hot path passes. `make install` runs them all once
(`ocs compile`, a line per group); `ocs serve` runs them again, which
with a warm cache takes about a second, and says so first when the cache
is cold (a changed source, another CPU, another numba).

numba checks only the source file of the function it caches: a kernel that
inlines a helper or a constant from another module would be loaded from
the cache unchanged after that module changed (an upgrade, an edit). So a
digest of every module with kernels and of the modules they import is kept
beside the cache; when it differs, the cache of every kernel is dropped
first (`drop_stale_cache`) and they compile again.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
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
    drop_stale_cache()
    return [g for g in GROUPS if not all(_cached(k) for k in g.kernels)]


_NUMBA = re.compile(r"^\s*(import numba|from numba)", re.M)
_IMPORT = re.compile(r"^\s*from (\.+)([\w.]*) import \(?([\w, \n]+)", re.M)


def kernel_sources() -> list[Path]:
    """The modules with numba kernels, and the modules of ocs they import."""
    root = Path(__file__).resolve().parent
    with_kernels = [p for p in root.rglob("*.py") if _NUMBA.search(p.read_text(errors="replace"))]
    found = set(with_kernels)
    for p in with_kernels:
        for dots, module, names in _IMPORT.findall(p.read_text(errors="replace")):
            base = p.parent
            for _ in range(len(dots) - 1):
                base = base.parent
            target = base.joinpath(*module.split(".")) if module else base
            candidates = [target.with_suffix(".py"), target / "__init__.py"]
            if not module:         # from . import a, b: modules of the package
                candidates += [base / f"{n.strip()}.py" for n in names.split(",") if n.strip()]
            found.update(c for c in candidates if c.is_file() and root in c.parents)
    return sorted(found)


def drop_stale_cache() -> bool:
    """Drop numba's cache of every kernel when a module with kernels, or one
    they import, changed since it was filled. True if it was dropped."""
    digest = hashlib.sha256()
    for p in kernel_sources():
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    want = digest.hexdigest()
    where = cache_dir()
    if not os.path.isdir(where):
        return False
    stamp = Path(where) / "ocs-kernel-sources.sha256"
    try:
        if stamp.exists() and stamp.read_text().strip() == want:
            return False
        for f in Path(where).rglob("*.nb[ic]"):
            f.unlink(missing_ok=True)
        stamp.write_text(want + "\n")
    except OSError:         # a cache numba cannot write to either: it compiles in memory
        return False
    return True


def cache_dir() -> str:
    """Where numba keeps the kernels: under NUMBA_CACHE_DIR if set, else in
    the `__pycache__` beside each module (their common parent)."""
    dirs = [k._cache._cache_path for g in GROUPS for k in g.kernels if hasattr(k, "_cache")]
    return os.path.commonpath(dirs) if dirs else "(none: NUMBA_DISABLE_JIT)"


def warm_up(rules: RuleSet, report: Callable[[str, float, bool], None] | None = None) -> float:
    """Compile or load every group; `report(name, seconds, compiled)` after
    each. Returns the seconds taken."""
    drop_stale_cache()
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
