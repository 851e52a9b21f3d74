"""python -m loadtest: simulate PGWs against a Diameter Gy server and judge it.

Exit status: 0 when every answer passed, 1 when the server failed a check
(or timed out, or dropped a gateway), 2 when the test could not run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from . import scenario as scenarios
from .run import LoadTestError, default_progress, run_sync

# (flag, scenario key, type, help). Every flag overrides the scenario file.
FLAGS = [
    ("--target", "target", str, "HOST:PORT of the server (default 127.0.0.1:3868)"),
    ("--gateways", "gateways.count", int, "simulated PGWs, one connection and Origin-Host each"),
    ("--origin-host", "gateways.origin_host", str,
     "Origin-Host pattern, {n} = gateway number (default pgw{n}.loadtest.example)"),
    ("--origin-realm", "gateways.origin_realm", str, "Origin-Realm of the gateways"),
    ("--destination-realm", "gateways.destination_realm", str, "Destination-Realm of the CCRs"),
    ("--mode", "load.mode", str, "closed: a window of requests in flight; open: a fixed rate"),
    ("--window", "load.window", int, "closed loop: requests in flight per gateway"),
    ("--sessions", "load.sessions", int, "open loop: concurrent sessions per gateway"),
    ("--rate", "load.rate", float, "open loop: CCR/s of all gateways together"),
    ("--ramp-from", "load.ramp_from", float, "open loop: CCR/s at the start of a ramp"),
    ("--ramp-seconds", "load.ramp_seconds", float, "open loop: seconds to ramp up to --rate"),
    ("--burst-rate", "load.burst_rate", float, "open loop: CCR/s during bursts"),
    ("--burst-every", "load.burst_every", float, "open loop: seconds between burst starts"),
    ("--burst-seconds", "load.burst_seconds", float, "open loop: length of a burst"),
    ("--burst-at", "load.burst_at", float, "open loop: start of the first burst (s)"),
    ("--warmup", "load.warmup", float, "seconds of traffic before measuring"),
    ("--duration", "load.duration", float, "measured seconds (0: until --requests are sent)"),
    ("--requests", "load.requests", int, "measured requests of all gateways (0: no limit)"),
    ("--timeout", "load.timeout", float, "seconds a gateway waits for an answer"),
    ("--storm-every", "reconnect.every", float,
     "seconds between reconnect storms (0: none)"),
    ("--storm-at", "reconnect.at", float, "first storm, seconds after traffic starts"),
    ("--storm-fraction", "reconnect.fraction", float, "share of the gateways dropped per storm"),
    ("--reconnect-delay", "reconnect.delay", float, "seconds before a dropped gateway reconnects"),
    ("--msisdns", None, str, "FIRST-LAST subscriber range (same number of digits)"),
    ("--plan-octets", "subscribers.plan_octets", str,
     "fail when a subscriber holds + used more than this (e.g. \"100 GB\"; 0: unchecked)"),
    ("--rating-groups", "sessions.rating_groups", str, "rating group ids, e.g. 10,20,30"),
    ("--request-octets", "sessions.request_octets", str,
     "CC-Total-Octets in each Requested-Service-Unit (0: empty RSU)"),
    ("--updates", None, str, "CCR-Updates per session (N or MIN-MAX), in every profile"),
    ("--use-percent", None, str, "MIN-MAX share of each grant used, in every profile"),
    ("--expect-results", "judge.expect_results", str,
     "Result-Codes that are not failures (default 2001,4012)"),
    ("--seed", "seed", int, "seed of the usage draws"),
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest", description=__doc__.split("\n")[0],
        epilog="Scenarios: " + ", ".join(scenarios.names()) + f" (in {scenarios.SCENARIOS}). "
               "Flags override the scenario. docs/loadtest.md explains every field.")
    p.add_argument("--scenario", "-s", help="a scenario name or a TOML file (default: steady)")
    p.add_argument("--list", action="store_true", help="list the named scenarios and exit")
    for flag, key, kind, text in FLAGS:
        p.add_argument(flag, type=kind, help=text, dest=flag[2:].replace("-", "_"))
    p.add_argument("--graceful", action="store_true", default=None,
                   help="storms: DPR/DPA before leaving (default: reset the connection)")
    p.add_argument("--relaxed", action="store_true", default=None,
                   help="match answers by hop-by-hop id only (the echo server); for "
                        "capacity runs, never to judge a server")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any scenario field, e.g. --set load.tick=0.05 (TOML values)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--plots", metavar="PREFIX",
                   help="write PREFIX-latency.png (CDF) and PREFIX-timeline.png (needs "
                        "matplotlib: pip install -e '.[bench]')")
    p.add_argument("--progress", action="store_true", default=None,
                   help="progress line on stderr (default: when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress line, even on a terminal")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary on stdout")
    return p


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _pair(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return [int(lo), int(hi or lo)]


def overrides(a: argparse.Namespace) -> dict[str, object]:
    found: dict[str, object] = {}
    for flag, key, _, _ in FLAGS:
        value = getattr(a, flag[2:].replace("-", "_"))
        if value is None or key is None:
            continue
        if key in ("sessions.rating_groups", "judge.expect_results"):
            value = _ints(value)
        elif key in ("subscribers.plan_octets", "sessions.request_octets"):
            value = int(value) if value.isdigit() else value
        found[key] = value
    if a.msisdns:
        first, _, last = a.msisdns.partition("-")
        found["subscribers.first"], found["subscribers.last"] = first, last or first
    if a.graceful:
        found["reconnect.graceful"] = True
    if a.relaxed:
        found["judge.relaxed"] = True
    for item in a.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise scenarios.ScenarioError(f"--set {item}: KEY=VALUE")
        found[key.strip()] = scenarios.parse_value(value.strip())
    return found


def resolve(a: argparse.Namespace) -> scenarios.Scenario:
    sc = scenarios.load(a.scenario or "steady", overrides(a))
    if a.updates is None and a.use_percent is None:
        return sc
    data = scenarios.to_dict(sc)  # a flag for every profile at once
    for profile in data["sessions"]["profile"]:
        if a.updates is not None:
            profile["updates"] = _pair(a.updates)
        if a.use_percent is not None:
            profile["use_percent"] = _pair(a.use_percent)
    try:
        return msgspec.convert(data, scenarios.Scenario)
    except (msgspec.ValidationError, ValueError) as exc:
        raise scenarios.ScenarioError(str(exc)) from None


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if a.list:
        for name in scenarios.names():
            print(f"{name:18} {scenarios.load(name).description}")
        return 0
    try:
        sc = resolve(a)
    except (scenarios.ScenarioError, ValueError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_sync(sc, default_progress(a.progress))
    except (LoadTestError, OSError) as exc:
        print(f"load test failed: {exc}", file=sys.stderr)
        return 2
    if not a.quiet:
        print(result.summary())
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(result.to_json())
    if a.plots:
        from . import plots
        for path in plots.write(result, a.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
