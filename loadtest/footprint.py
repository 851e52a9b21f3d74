"""Start-up time and resident memory of `ocs serve`, measured from outside.

    python -m loadtest.footprint [--subscribers 10000000]

Four starts, each timed from exec to the "listening on" log line, with the
resident set size (VmRSS) read from /proc once it listens:
  1. demo rules, numba's on-disk cache empty (NUMBA_CACHE_DIR fresh): cold;
  2. demo rules again, the same cache: warm;
  3. demo rules plus a range of N extra subscribers, first start: they are
     provisioned and a snapshot written;
  4. the same again after SIGTERM: N subscribers recovered from the
     snapshot and journal, warm cache.
Only the process is observed; nothing of the server is imported.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(rb"listening on [\d.]+:(\d+)")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_once(rules: Path, data: Path, cache: Path, timeout: float = 600) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    log = data.with_suffix(".log")
    with open(log, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "ocs.cli", "serve", "--listen", "127.0.0.1:0",
                                 "--data", str(data), "--rules", str(rules)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while time.monotonic() - t0 < timeout:
                if _LISTENING.search(log.read_bytes()):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"ocs serve exited: {log.read_text()[-2000:]}")
                time.sleep(0.02)
            seconds = time.monotonic() - t0
            time.sleep(0.5)
            rss = _rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
    return {"seconds": seconds, "rss_mb": rss}


def measure(extra_subscribers: int) -> list[tuple[str, dict]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "numba-cache"
        demo = REPO / "rules" / "demo"
        rows.append(("demo rules, numba cache cold", start_once(demo, tmp / "d1", cache)))
        rows.append(("demo rules, numba cache warm", start_once(demo, tmp / "d2", cache)))
        big = tmp / "rules-big"
        shutil.copytree(demo, big)
        first = 8617000000000
        (big / "zz-footprint.toml").write_text(
            f'[[subscriber_range]]\nfirst = "{first}"\nlast = "{first + extra_subscribers - 1}"\n'
            f'plan = "loadtest-100g"\nbalance = "100.00"\n')
        label = f"{extra_subscribers:,} extra subscribers"
        rows.append((f"{label}, first start (provision + snapshot)", start_once(big, tmp / "d3", cache)))
        rows.append((f"{label}, restart (recovery), cache warm", start_once(big, tmp / "d3", cache)))
    return rows


def render(rows: list[tuple[str, dict]]) -> str:
    lines = ["| start | to listening, s | resident memory, MB |", "|---|---:|---:|"]
    lines += [f"| {label} | {r['seconds']:.2f} | {r['rss_mb']:,.0f} |" for label, r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.footprint", description=__doc__.split("\n")[0])
    p.add_argument("--subscribers", type=int, default=10_000_000, help="extra subscribers for starts 3 and 4")
    args = p.parse_args(argv)
    print(render(measure(args.subscribers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
