"""Benchmark: the OCS against the reference servers, written up as markdown.

Each server runs as its own process on a free port; the closed-loop
generator runs as another process, so on a 2-core machine each has a core
(both are pinned when the machine has two or more). Every window is a fresh
connection with its own warm-up.

    python -m loadtest.bench --out docs/benchmarks.md [--windows 1,64,512]
        [--duration 10] [--warmup 2] [--servers ocs,pydiameter,echo]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
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
                          "--listen", "127.0.0.1:{port}"]),
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


def run_generator(port: int, window: int, args, relaxed: bool, cpu) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "loadtest.closed_loop", "--target", f"127.0.0.1:{port}",
               "--window", str(window), "--duration", str(args.duration),
               "--warmup", str(args.warmup), "--json", out.name]
        if relaxed:
            cmd.append("--relaxed")
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=args.warmup + args.duration + 120,
                              preexec_fn=_pinned(cpu))
        if proc.returncode not in (0, 1):
            return {"failed": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        return json.loads(Path(out.name).read_text())["result"]


def bench_server(server: Server, args, notes: list[str]) -> list[tuple[int, dict]]:
    server_cpu, gen_cpu = _cpus(args.pin)
    rows = []
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        argv = [a.format(port=port, data=data) for a in server.argv]
        log = open(Path(data) / "server.log", "w+")
        proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_pinned(server_cpu))
        try:
            if not wait_listening(port, proc):
                log.seek(0)
                tail = " | ".join(log.read().strip().splitlines()[-3:])
                notes.append(f"{server.label}: did not start listening ({tail})")
                return rows
            for window in args.windows:
                result = run_generator(port, window, args, server.relaxed, gen_cpu)
                rows.append((window, result))
                print(f"{server.label:22} window {window:4}: " + (
                    f"{result['ccr_per_s']:,.0f} CCR/s, p99 {result['latency_ms']['p99']:.3f} ms,"
                    f" errors {result['errors']}" if "failed" not in result
                    else f"failed {result['failed']}"), flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    return rows


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


def render(results: dict[str, list[tuple[int, dict]]], args, notes: list[str]) -> str:
    lines = [
        "# Benchmarks", "",
        f"Generated {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by",
        "", f"    {' '.join(shlex.quote(a) for a in args.command)}", "",
        f"Machine: {machine()}. Server and generator are separate processes"
        + (", each pinned to its own core." if args.pin and _cpus(True)[0] is not None
           else ", placed by the scheduler (not pinned)."), "",
        f"Closed loop over one connection: W requests in flight, {args.warmup:g} s warm-up "
        f"(not counted), then {args.duration:g} s measured. Sessions are CCR-I, 3 CCR-U, "
        "CCR-T over MSISDNs 8613900000000-8613900099999. Latency is send to answer. "
        "Errors: check failures (wrong Session-Id / CC-Request-Number, unexpected "
        "Result-Code), timeouts and unmatched answers. The echo server is checked by "
        "hop-by-hop id only.", "",
        "| server | window | answered CCR/s | p50 ms | p99 ms | errors | generator CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in results.items():
        for window, r in rows:
            if "failed" in r:
                lines.append(f"| {label} | {window} | failed | | | | |")
                continue
            lines.append(
                f"| {label} | {window} | {r['ccr_per_s']:,.0f} | {r['latency_ms']['p50']:.3f} "
                f"| {r['latency_ms']['p99']:.3f} | {r['errors']} "
                f"| {r['generator_cpu_percent']:.0f}% |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench")
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument("--windows", default="1,64,512")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--servers", default="ocs,pydiameter,echo",
                   help=f"comma-separated, from {', '.join(SERVERS)}")
    p.add_argument("--footprint-subscribers", type=int, default=10_000_000,
                   help="subscribers for the start-up and memory measurement (0: skip it)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="let the scheduler place server and generator (default: one "
                        "core each)")
    args = p.parse_args(argv)
    args.windows = [int(w) for w in args.windows.split(",")]
    args.command = ["python", "-m", "loadtest.bench", *(sys.argv[1:] if argv is None else argv)]
    notes: list[str] = []
    results = {}
    for key in args.servers.split(","):
        server = SERVERS[key]
        if key == "ocs" and subprocess.run([sys.executable, "-c", "import ocs.cli"], cwd=REPO,
                                           capture_output=True).returncode:
            notes.append("ocs: skipped, `import ocs.cli` fails (server not built yet)")
            continue
        results[server.label] = bench_server(server, args, notes)
    text = render(results, args, notes)
    if args.footprint_subscribers and "ocs" in args.servers.split(","):
        from . import footprint
        rows = footprint.measure(args.footprint_subscribers)
        text += ("\n## Start-up and memory of `ocs serve`\n\n"
                 "From `python -m loadtest.footprint` (run by this command): time from exec to the "
                 "listening log line, and VmRSS once listening. Cold means numba's on-disk cache "
                 "empty; the restart recovers every subscriber from the snapshot and journal.\n\n"
                 + footprint.render(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
