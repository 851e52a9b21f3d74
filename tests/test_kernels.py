"""ocs/kernels.py tells a cold numba cache from a warm one before it
compiles (so `ocs serve` can say a minute of compiling is not a hang), from
numba's own cache index; and `ocs compile` prints a line per group. Each
case runs in a fresh process with a cache directory of its own."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# the cheap group only: the charging kernel's minute is paid by `make install`, not here
SCRIPT = """
from ocs import kernels
from ocs.rules.compile import load_rules
before = [g.name for g in kernels.cold_groups()]
group = next(g for g in kernels.GROUPS if g.name == "duplicate cache")
group.run(load_rules("rules/demo"))
after = [g.name for g in kernels.cold_groups()]
print(repr((before, after)))
"""

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled")


def _run(cache: Path, root: Path = ROOT) -> tuple[list[str], list[str]]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])


def test_cold_and_warm_caches_are_told_apart(tmp_path):
    every = [g.name for g in __import__("ocs.kernels").kernels.GROUPS if g.kernels]
    before, after = _run(tmp_path)
    assert before == every, "an empty cache is cold for every group"
    assert "duplicate cache" not in after and len(after) == len(every) - 1
    before, after = _run(tmp_path)       # a new process finds what the last one compiled
    assert "duplicate cache" not in before and len(before) == len(every) - 1


def test_a_changed_source_makes_its_group_cold(tmp_path):
    """numba keys its cache on the source file's content: a changed
    ocs/store/dedup.py is cold again until compiled (in a copy of the
    package, not this checkout's)."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "ocs", copy / "ocs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules" / "demo", copy / "rules" / "demo")
    _run(tmp_path / "cache", copy)
    with open(copy / "ocs" / "store" / "dedup.py", "a") as f:
        f.write("# changed\n")
    before, after = _run(tmp_path / "cache", copy)
    assert "duplicate cache" in before and "duplicate cache" not in after


def test_ocs_compile_prints_a_line_per_group(tmp_path):
    """With the cache of the checkout (compiled by `make install`), every
    group loads from it."""
    from ocs import kernels
    out = subprocess.run([sys.executable, "-m", "ocs.cli", "compile"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("kernels ready in ")
    for g in kernels.GROUPS:
        assert any(line.strip().startswith(g.name) for line in lines), g.name
