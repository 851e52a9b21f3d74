"""Benchmark: the OCS against the reference servers, written up as markdown.

Every figure comes from `python -m loadtest` (docs/loadtest.md), run as its
own process against each server in its own process on a free port, so on a
2-core machine each has a core (both are pinned when there are two or more):

1. closed loop, one connection, windows 1, 64 and 512 (the `closed`
   scenario): the most each server answers on one connection;
2. open loop, the `steady` scenario at one rate every server can sustain
   (4 gateways, mixed sessions): latency at equal offered load, with the
   latency CDF of all servers and each one's throughput/p99 timeline;
3. the `ramp` scenario on ocs: where its latency leaves the floor;
4. the `capacity` scenario against the echo server: the generator's own
   ceiling on one core.

    python -m loadtest.bench --out docs/benchmarks.md [--windows 1,64,512]
        [--duration 10] [--warmup 2] [--servers ocs,pydiameter,echo]
        [--steady-rate 1000] [--no-ramp] [--footprint-subscribers 0]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    key: str
    label: str
    argv: list[str]  # "{port}" and "{data}" are filled in
    relaxed: bool = False


SERVERS = {
    "ocs": Server("ocs", "ocs", ["-m", "ocs.cli", "serve", "--listen", "127.0.0.1:{port}",
                                 "--data", "{data}", "--rules", "rules/demo"]),
    "pydiameter": Server("pydiameter", "python-diameter Node",
                         ["-m", "loadtest.reference.pydiameter_responder",
                          "--listen", "127.0.0.1:{port}", "--peers", "8"]),
    "echo": Server("echo", "echo", ["-m", "loadtest.reference.echo",
                                    "--listen", "127.0.0.1:{port}"], relaxed=True),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(cpu: int | None):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _cpus(pin: bool) -> tuple[int | None, int | None]:
    """(server CPU, generator CPU), or None for no pinning."""
    if not pin:
        return None, None
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_loadtest(port: int, flags: list[str], relaxed: bool, cpu, limit: float) -> dict:
    """One `python -m loadtest` run; its JSON report, or {"failed": why}."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "loadtest", "--target", f"127.0.0.1:{port}",
               "--no-progress", "--quiet", "--json", out.name, *flags]
        if relaxed:
            cmd.append("--relaxed")
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=limit + 120, preexec_fn=_pinned(cpu))
        if proc.returncode not in (0, 1):
            return {"failed": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        return json.loads(Path(out.name).read_text())


class Running:
    """A server process on a free port, for the duration of a with-block."""

    def __init__(self, server: Server, cpu):
        self.server, self.cpu = server, cpu

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.port = free_port()
        argv = [a.format(port=self.port, data=self._tmp.name) for a in self.server.argv]
        self._log = open(Path(self._tmp.name) / "server.log", "w+")
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=_pinned(self.cpu))
        if not wait_listening(self.port, self.proc):
            self._log.seek(0)
            tail = " | ".join(self._log.read().strip().splitlines()[-3:])
            self.__exit__()
            raise RuntimeError(f"{self.server.label}: did not start listening ({tail})")
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self._tmp.cleanup()


def _line(label: str, what: str, r: dict) -> str:
    if "failed" in r:
        return f"{label:22} {what}: failed {r['failed']}"
    return (f"{label:22} {what}: {r['answered_per_s']:,.0f} answers/s, p99 "
            f"{r['latency_ms']['p99']:.3f} ms, errors {r['errors']}")


def bench_server(server: Server, args, notes: list[str]) -> dict:
    """Every run against one server: {"closed": [(window, report)], "steady": report, ...}."""
    server_cpu, gen_cpu = _cpus(args.pin)
    runs: dict = {"closed": []}
    measure = ["--warmup", str(args.warmup), "--duration", str(args.duration)]
    limit = args.warmup + args.duration
    try:
        with Running(server, server_cpu) as s:
            for window in args.windows:
                r = run_loadtest(s.port, ["-s", "closed", "--window", str(window), *measure],
                                 server.relaxed, gen_cpu, limit)
                runs["closed"].append((window, r))
                print(_line(server.label, f"closed window {window:4}", r), flush=True)
            r = run_loadtest(s.port, ["-s", "steady", "--rate", str(args.steady_rate),
                                      *measure], server.relaxed, gen_cpu, limit)
            runs["steady"] = r
            print(_line(server.label, f"steady {args.steady_rate:,}/s", r), flush=True)
            if server.key == "ocs" and args.ramp:
                runs["ramp"] = run_loadtest(s.port, ["-s", "ramp"], False, gen_cpu, 90)
                print(_line(server.label, "ramp", runs["ramp"]), flush=True)
            if server.key == "echo":
                runs["capacity"] = run_loadtest(s.port, ["-s", "capacity", *measure], True,
                                                gen_cpu, limit)
                print(_line(server.label, "capacity", runs["capacity"]), flush=True)
            if not s.alive():
                notes.append(f"{server.label}: the server process exited during the runs")
    except RuntimeError as exc:
        notes.append(str(exc))
    return runs


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def source() -> str:
    """The commit measured, "-dirty" when the working tree has uncommitted changes."""
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown (not a git checkout)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench")
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument("--windows", default="1,64,512")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--servers", default="ocs,pydiameter,echo",
                   help=f"comma-separated, from {', '.join(SERVERS)}")
    p.add_argument("--steady-rate", type=int, default=1000,
                   help="CCR/s of the open-loop comparison (every server should sustain it)")
    p.add_argument("--no-ramp", dest="ramp", action="store_false",
                   help="skip the 60 s ramp on ocs")
    p.add_argument("--footprint-subscribers", type=int, default=10_000_000,
                   help="subscribers for the start-up and memory measurement (0: skip it)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="let the scheduler place server and generator (default: one "
                        "core each)")
    args = p.parse_args(argv)
    args.windows = [int(w) for w in args.windows.split(",")]
    args.command = ["python", "-m", "loadtest.bench", *(sys.argv[1:] if argv is None else argv)]
    args.started = datetime.datetime.now().astimezone()
    args.machine = machine()
    args.source = source()
    args.pinned = args.pin and _cpus(True)[0] is not None
    notes: list[str] = []
    results = {}
    for key in args.servers.split(","):
        server = SERVERS[key]
        if key == "ocs" and subprocess.run([sys.executable, "-c", "import ocs.cli"], cwd=REPO,
                                           capture_output=True).returncode:
            notes.append("ocs: skipped, `import ocs.cli` fails (server not built yet)")
            continue
        results[server.label] = bench_server(server, args, notes)
    from .bench_report import render
    out = Path(args.out)
    text = render(results, args, notes, out.parent / out.stem)
    if args.footprint_subscribers and "ocs" in args.servers.split(","):
        from . import footprint
        rows = footprint.measure(args.footprint_subscribers)
        text += ("\n## Start-up and memory of `ocs serve`\n\n"
                 "From `python -m loadtest.footprint` (run by this command): time from exec to the "
                 "listening log line, and VmRSS once listening. Cold means numba's on-disk cache "
                 "empty; the restart recovers every subscriber from the snapshot and journal.\n\n"
                 + footprint.render(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
