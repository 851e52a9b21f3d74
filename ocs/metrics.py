"""Prometheus metrics (prometheus-client), served at /metrics on the API
address (and, if configured, on a metrics-only address).

Counted per batch, not per request: a batch's request types and result codes
are tallied with numpy and each distinct pair increments its counter once,
so the hot path pays a few microseconds per batch, not per request; request
latencies go into a histogram whose buckets numpy fills a batch at a time.
Gauges (peers by state, open sessions, held reservations) are read when
scraped.
"""
from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import HistogramMetricFamily

from .engine.notices import R_CAP, R_CEILING, R_CREDIT, R_THROTTLED
from .engine.tables import NO_RG, SLOT_FREE

REQUEST_TYPES = {1: "INITIAL", 2: "UPDATE", 3: "TERMINATE", 4: "EVENT"}
CAP_KINDS = ((R_CREDIT, "credit_exhausted"), (R_CAP, "cap"), (R_CEILING, "ceiling"), (R_THROTTLED, "throttled"))
MAX_RATING_GROUPS = 200     # distinct rating_group label values; a gateway must not grow the exposition unboundedly
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LatencyHistogram:
    """ocs_request_duration_seconds: a histogram filled a batch at a time
    (prometheus-client's Histogram takes one observation per call)."""

    def __init__(self, name: str, doc: str, bounds=LATENCY_BUCKETS):
        self.name, self.doc = name, doc
        self.bounds = np.asarray(bounds)
        self.counts: dict[str, np.ndarray] = {}
        self.sums: dict[str, float] = {}

    def observe_many(self, command: str, seconds: np.ndarray, weights: np.ndarray) -> None:
        counts = self.counts.get(command)
        if counts is None:
            counts = self.counts[command] = np.zeros(len(self.bounds) + 1, np.int64)
            self.sums[command] = 0.0
        np.add.at(counts, np.searchsorted(self.bounds, seconds, side="left"), weights)
        self.sums[command] += float(np.dot(seconds, weights))

    def collect(self):
        family = HistogramMetricFamily(self.name, self.doc, labels=["command"])
        for command, counts in self.counts.items():
            cumulative = np.cumsum(counts).tolist()
            buckets = [(repr(float(b)), c) for b, c in zip(self.bounds.tolist(), cumulative)]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric([command], buckets, self.sums[command])
        yield family


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ocs_requests", "Diameter requests answered, by command, CC-Request-Type and "
                                "Result-Code", ["command", "request_type", "result_code"], registry=r)
        self.batch_size = Histogram("ocs_batch_size", "Requests charged together in one batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096), registry=r)
        self.journal_seconds = Histogram("ocs_journal_write_seconds", "One journal write and fdatasync (a group "
                                         "of batches)", buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                                 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=r)
        self.peers = Gauge("ocs_peers", "Connected Diameter peers by state", ["state"], registry=r)
        self.sessions = Gauge("ocs_open_sessions", "Open credit-control sessions", registry=r)
        self.reservations = Gauge("ocs_reservations", "Rating-group reservations held by open sessions", registry=r)
        self.reauth = Counter("ocs_reauth_requests", "Re-Auth-Requests sent to gateways, by the Result-Code of "
                              "their RAA (or timeout, no_peer)", ["result"], registry=r)
        self.latency = LatencyHistogram("ocs_request_duration_seconds", "From a request read off the socket to "
                                        "its answer handed to the socket, journal write included")
        r.register(self.latency)
        self.grants = Counter("ocs_grants", "Rating-group quota granted (MSCCs answered 2001 with units)",
                              ["rating_group"], registry=r)
        self.denials = Counter("ocs_denials", "Rating-group requests refused, by the MSCC Result-Code",
                               ["rating_group", "result_code"], registry=r)
        self.cap_events = Counter("ocs_cap_events", "MSCC answers whose grant a limit stopped or cut short: "
                                  "credit_exhausted, cap (fee/volume cap), ceiling, throttled", ["kind"],
                                  registry=r)
        ProcessCollector(registry=r)
        self._rg_labels: set[int] = set()
        self.rules = Gauge("ocs_rules_info", "The rules version in force", ["version"], registry=r)

    def count(self, types: np.ndarray, results: list[int]) -> None:
        """Tally one batch of CCRs (request types and top-level Result-Codes)."""
        if not len(results):
            return
        self.batch_size.observe(len(results))
        key = types.astype(np.int64) * 10_000 + np.asarray(results, dtype=np.int64)
        values, counts = np.unique(key, return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist()):
            rtype, code = divmod(v, 10_000)
            self.requests.labels("CCR", REQUEST_TYPES.get(rtype, "UNKNOWN"), str(code)).inc(n)

    def count_units(self, units: np.ndarray | None) -> None:
        """Tally one batch's charged MSCCs: grants and denials by rating
        group, and the limits that stopped grants."""
        if units is None or not len(units):
            return
        result = units["result"]
        granted = (result == 2001) & (units["granted"] > 0)
        if granted.any():
            rgs, n = np.unique(units["rg"][granted], return_counts=True)
            for rg, k in zip(rgs.tolist(), n.tolist()):
                self.grants.labels(self._rg(rg)).inc(k)
        denied = (result != 2001) & (result != 0)
        if denied.any():
            pairs, n = np.unique(np.stack([units["rg"][denied], result[denied].astype(np.int64)], axis=1),
                                 axis=0, return_counts=True)
            for (rg, code), k in zip(pairs.tolist(), n.tolist()):
                self.denials.labels(self._rg(rg), str(code)).inc(k)
        reasons = units["reason"]
        if reasons.any():
            for bit, kind in CAP_KINDS:
                k = int(np.count_nonzero(reasons & bit))
                if k:
                    self.cap_events.labels(kind).inc(k)

    def _rg(self, rg: int) -> str:
        if rg == NO_RG:
            return "none"
        if rg not in self._rg_labels:
            if len(self._rg_labels) >= MAX_RATING_GROUPS:
                return "other"
            self._rg_labels.add(rg)
        return str(rg)

    def render(self, server) -> bytes:
        """The exposition, with the gauges read now from `server`."""
        states: dict[str, int] = {}
        for peer in list(server.peers):
            states[peer.conn.state.name] = states.get(peer.conn.state.name, 0) + 1
        self.peers.clear()
        for state, n in states.items():
            self.peers.labels(state).set(n)
        store = server.store
        self.sessions.set(len(store.session_index))
        self.reservations.set(int(np.count_nonzero(store.sessions["rg"] != SLOT_FREE)))
        self.rules.clear()
        self.rules.labels(server.app.rules.version).set(1)
        return generate_latest(self.registry)
