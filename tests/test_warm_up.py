"""`ocs serve` compiles its kernels before it listens (ocs/kernels.py): a
kernel first compiled by a batch would stall the loop for up to a second.
numba compiles a function again for each new set of argument types
(read-only and writable arrays differ), so warm_up must call each kernel
with the types the hot path passes: after it, charging batches, writing
their usage records, and the kernels of rarer moments (midnight, Tcc, an
operator's pack or query) compile nothing, also in a server started again
from a snapshot. Run in a process of its own, where
no other test has compiled anything."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = """
import sys, time
from numba.core.registry import CPUDispatcher
from ocs.feeds import usage_lines
from ocs.kernels import warm_up
from ocs.diameter import fastcca, fastccr, fastwalk, message
from ocs.engine import kernel
from ocs.store import dedup
from ocs.feeds.usage import UsageLog
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

def signatures():
    return {f"{m.__name__}.{name}": len(f.signatures)
            for m in (fastccr, fastwalk, fastcca, message, kernel, dedup, usage_lines)
            for name, f in vars(m).items() if isinstance(f, CPUDispatcher)}

data = sys.argv[1]
ch = Charging(data + "/data", "rules/demo")
warm_up(ch.rules)
before = signatures()
now = time.time()
if sys.argv[2] == "restart":
    # as `ocs serve` starts: the store recovered (tables from the snapshot), warm_up, a batch
    got = ch.app.process([build_ccr("pgw.test", "s1", 2, 2, None, [{"rg": 10, "rsu": 0, "used": 1000}])
                          .as_bytes()], now)
    kernel.expire_sessions(ch.store.subs, ch.store.sessions, ch.store.sponsors, now + 1e6)
    print({k: (before.get(k), n) for k, n in signatures().items() if before.get(k) != n})
    sys.exit()
got = ch.app.process([build_ccr("pgw.test", f"s{k}", 1, 0, f"86139000000{k:02d}", [{"rg": 10, "rsu": 0}])
                      .as_bytes() for k in range(3)], now)
ch.store.write(got.record)
got = ch.app.process([build_ccr("pgw.test", f"s{k}", 2, 1, None, [{"rg": 10, "rsu": 0, "used": 1000}])
                      .as_bytes() for k in range(3)], now)
ch.store.write(got.record)
UsageLog(data + "/usage", lambda version: ch.rules, ch.store.label,
         lambda row: int(ch.store.subs[row]["plan"])).write([got.record])
row = ch.row("8613900000001")
subs, tables = ch.store.subs, ch.rules.tables
kernel.period_bounds(subs, tables, row)
kernel.rollover(subs, tables, row, now)
if len(tables.packs):
    kernel.add_pack(subs, tables, row, 0, now)
kernel.daily_sweep(subs, tables, ch.store.n_subs)
kernel.expire_sessions(subs, ch.store.sessions, ch.store.sponsors, now + 1e6)
kernel.close_session(subs, ch.store.sessions, ch.store.sponsors, ch.store.session_index[b"s0"])
ch.store.snapshot()
after = signatures()
print({k: (before.get(k), n) for k, n in after.items() if before.get(k) != n})
"""


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled")
def test_batches_after_warm_up_compile_nothing(tmp_path):
    for run in ("first", "restart"):
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), run], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "{}", f"{run} run compiled after warm_up (kernel: (before, after)): {out.stdout}"
