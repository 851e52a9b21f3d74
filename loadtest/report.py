"""The outcome of a load test: numbers, a one-screen summary, a JSON file.

Figures cover the measured interval and the drain after it: requests sent
in the warm-up are not counted, answers that arrive after the warm-up are
(also those to requests sent just before it ended), and so are the answers
and timeouts of the drain, so every request sent is accounted for. Rates
divide what happened inside the interval by its length. Latency runs
from when a request was due - its send time in a closed loop, its scheduled
time in an open loop - so queueing in the generator is included; "wire"
latency runs from the actual send.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .histogram import LatencyHistogram, highest_equivalent
from .slots import N_RESULT_CODES, STAT_NAMES

PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
ERROR_COUNTS = ("check_failed", "timeouts", "unmatched")


@dataclass
class Snapshot:
    """The run's counters at one instant (see Counters)."""
    ns: int
    cpu: float
    stats: np.ndarray
    results: np.ndarray
    latency: np.ndarray
    wire: np.ndarray


@dataclass
class Report:
    scenario: dict
    target: str
    started: str
    measured_seconds: float
    offered_per_s: float             # requests sent per second in the interval
    answered_per_s: float            # answers received per second in the interval
    target_rate: float | None        # open loop: the scheduled rate at full load
    latency_ms: dict[str, float]
    wire_latency_ms: dict[str, float]
    result_codes: dict[str, int]
    counts: dict[str, int]
    connections: dict[str, int]
    errors: int
    generator_cpu_percent: float
    series: list[dict] = field(default_factory=list)
    histogram: list[list[int]] = field(default_factory=list)  # [ns upper bound, count]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.counts.get("answered", 0) > 0

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        return json.dumps(_finite(data), indent=1, allow_nan=False)

    def summary(self) -> str:
        """One screen of text."""
        sc, c, conn = self.scenario, self.counts, self.connections
        load = sc["load"]
        shape = (f"closed loop, window {load['window']} per gateway" if load["mode"] == "closed"
                 else f"open loop, {self.target_rate:,.0f} CCR/s scheduled, "
                      f"{load['sessions']} sessions per gateway")
        lat, wire = self.latency_ms, self.wire_latency_ms
        codes = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.result_codes.items(),
                                                          key=lambda kv: int(kv[0])))
        failures = ", ".join(f"{k.removeprefix('fail_').replace('_', '-')} {c[k]:,}"
                             for k in STAT_NAMES if k.startswith("fail_") and c[k])
        lines = [
            f"scenario {sc['name']}  target {self.target}  {conn['gateways']} gateways  {shape}",
            f"measured {self.measured_seconds:.2f} s after {load['warmup']:g} s warm-up  "
            f"generator CPU {self.generator_cpu_percent:.0f}% of a core",
            f"throughput  {self.answered_per_s:,.0f} answers/s  "
            f"({self.offered_per_s:,.0f} requests/s sent)",
            "latency ms  " + "  ".join(f"{k} {lat[k]:.3f}" for k in (*_names(), "max")),
            "  wire ms   " + "  ".join(f"{k} {wire[k]:.3f}" for k in (*_names(), "max")),
            f"requests    sent {c['sent']:,} (I {c['sent_initial']:,} / U {c['sent_update']:,}"
            f" / T {c['sent_terminate']:,})  answered {c['answered']:,}  "
            f"retransmitted {c['retransmitted']:,}",
            f"result codes  {codes or '-'}",
            f"sessions    started {c['sent_initial']:,}  completed "
            f"{c['sessions_completed']:,}  abandoned {c['sessions_abandoned']:,}  "
            f"refused {c['refused']:,}  zero grants {c['zero_grants']:,}",
            f"octets      requested {c['octets_requested']:,}  granted "
            f"{c['octets_granted']:,}  reported used {c['octets_reported']:,}",
            f"connections {conn['connects']:,} connects, {conn['drops']:,} dropped by "
            f"{conn['storms']:,} storms, {conn['server_disconnects']:,} by the server, "
            f"{conn['connect_failures']:,} failed, {conn['dwr_answered']:,} DWR answered",
            f"errors {self.errors:,}: check failures {c['check_failed']:,}"
            + (f" ({failures}, malformed {c['malformed']:,})" if c['check_failed'] else "")
            + f", timeouts {c['timeouts']:,} ({c['timeouts_unsent']:,} never sent), "
            f"unmatched answers {c['unmatched']:,}",
            "PASS" if self.passed else "FAIL",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _names():
    return [name for name, _ in PERCENTILES]


def _finite(value):
    """JSON has no NaN: an undefined figure is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def latency_figures(counts: np.ndarray, top_ns: int | None = None) -> dict[str, float]:
    """Percentiles and max in ms; a bucket's upper bound never above the exact max."""
    hist = LatencyHistogram()
    hist.counts[:] = counts
    top = hist.max() if top_ns is None else top_ns
    figures = {name: min(hist.percentile(q), top) / 1e6 for name, q in PERCENTILES}
    figures["max"] = top / 1e6
    return figures


def nonzero_buckets(counts: np.ndarray) -> list[list[int]]:
    return [[highest_equivalent(int(b)), int(counts[b])] for b in np.flatnonzero(counts)]


def build(scenario: dict, target: str, started: str, opened: Snapshot, closed: Snapshot,
          final: Snapshot, connections: dict[str, int], target_rate: float | None,
          series: list[dict], notes: list[str]) -> Report:
    """opened/closed bound the interval; final is after the drain (late answers)."""
    seconds = (closed.ns - opened.ns) / 1e9
    in_window = closed.stats - opened.stats
    counts = dict(zip(STAT_NAMES, map(int, final.stats - opened.stats)))
    top = int(final.stats[STAT_NAMES.index("max_latency_ns")])
    counts.pop("max_latency_ns")
    latency = final.latency - opened.latency
    wire = final.wire - opened.wire
    results = final.results - opened.results
    codes = {str(c): int(results[c]) for c in np.flatnonzero(results[:N_RESULT_CODES])}
    errors = sum(counts[k] for k in ERROR_COUNTS)
    errors += connections["server_disconnects"] + connections["connect_failures"]
    rate = (lambda name: in_window[STAT_NAMES.index(name)] / seconds if seconds > 0 else math.nan)
    cpu = 100 * (closed.cpu - opened.cpu) / seconds if seconds > 0 else math.nan
    return Report(scenario=scenario, target=target, started=started,
                  measured_seconds=seconds, offered_per_s=float(rate("sent")),
                  answered_per_s=float(rate("answered")), target_rate=target_rate,
                  latency_ms=latency_figures(latency, top if latency.sum() else 0),
                  wire_latency_ms=latency_figures(wire), result_codes=codes,
                  counts=counts, connections=connections, errors=errors,
                  generator_cpu_percent=cpu, series=series,
                  histogram=nonzero_buckets(latency), notes=notes)


def load(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)
