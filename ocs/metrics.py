"""Prometheus metrics (prometheus-client), served at /metrics on the API
address (and, if configured, on a metrics-only address).

Counted per batch, not per request: a batch's request types, result codes
and rating groups are tallied into plain dicts (with numpy when the batch
is large), which a collector turns into counters when scraped, so the hot
path pays a few microseconds per batch; request latencies go into a
histogram filled a batch at a time.
Gauges (peers by state, open sessions, held reservations) are read when
scraped.
"""
from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

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
        self.bounds = list(bounds)
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe_many(self, command: str, seconds: list[float], weights: list[int]) -> None:
        counts = self.counts.get(command)
        if counts is None:
            counts = self.counts[command] = [0] * (len(self.bounds) + 1)
            self.sums[command] = 0.0
        total = 0.0
        for s, w in zip(seconds, weights):
            counts[bisect_left(self.bounds, s)] += w
            total += s * w
        self.sums[command] += total

    def collect(self):
        family = HistogramMetricFamily(self.name, self.doc, labels=["command"])
        for command, counts in self.counts.items():
            cumulative = list(accumulate(counts))
            buckets = [(repr(float(b)), c) for b, c in zip(self.bounds, cumulative)]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric([command], buckets, self.sums[command])
        yield family


class Tallies:
    """The per-batch counters (requests, grants, denials, cap events) as
    plain dicts, turned into counter families when scraped: the hot path
    adds to a dict, and takes no lock and no label lookup."""

    def __init__(self):
        self.requests: dict[tuple[int, int], int] = {}
        self.grants: dict[int, int] = {}
        self.denials: dict[tuple[int, int], int] = {}
        self.caps: dict[str, int] = {}

    def collect(self):
        f = CounterMetricFamily("ocs_requests", "Diameter requests answered, by command, CC-Request-Type and "
                                "Result-Code", labels=["command", "request_type", "result_code"])
        for (rtype, code), n in sorted(self.requests.items()):
            f.add_metric(["CCR", REQUEST_TYPES.get(rtype, "UNKNOWN"), str(code)], n)
        yield f
        f = CounterMetricFamily("ocs_grants", "Rating-group quota granted (MSCCs answered 2001 with units)",
                                labels=["rating_group"])
        for rg, n in sorted(self.grants.items(), key=str):
            f.add_metric([_rg_label(rg)], n)
        yield f
        f = CounterMetricFamily("ocs_denials", "Rating-group requests refused, by the MSCC Result-Code",
                                labels=["rating_group", "result_code"])
        for (rg, code), n in sorted(self.denials.items(), key=str):
            f.add_metric([_rg_label(rg), str(code)], n)
        yield f
        f = CounterMetricFamily("ocs_cap_events", "MSCC answers whose grant a limit stopped or cut short: "
                                "credit_exhausted, cap (fee/volume cap), ceiling, throttled", labels=["kind"])
        for kind, n in sorted(self.caps.items()):
            f.add_metric([kind], n)
        yield f

    def bound(self) -> None:
        """Keep at most MAX_RATING_GROUPS rating groups as label values (the
        most counted); fold the rest into "other", so a gateway sending
        random rating groups cannot grow the exposition, or this, unboundedly."""
        for tally, other in ((self.grants, lambda k: OTHER), (self.denials, lambda k: (OTHER, k[1]))):
            if len(tally) <= 2 * MAX_RATING_GROUPS:
                continue
            ranked = sorted(tally.items(), key=lambda kv: -kv[1])
            tally.clear()
            for k, n in ranked[:MAX_RATING_GROUPS]:
                tally[k] = n
            for k, n in ranked[MAX_RATING_GROUPS:]:
                key = other(k)
                tally[key] = tally.get(key, 0) + n


OTHER = "other"


def _rg_label(rg) -> str:
    return "none" if rg == NO_RG else str(rg)


def _add(tally: dict, keys) -> None:
    for k in keys:
        tally[k] = tally.get(k, 0) + 1


def _add_many(tally: dict, keys: np.ndarray) -> None:
    """Count each key; numpy sorts a large batch, a small one is quicker in Python."""
    if len(keys) <= 64:
        _add(tally, keys.tolist())
        return
    values, counts = np.unique(keys, return_counts=True)
    for v, n in zip(values.tolist(), counts.tolist()):
        tally[v] = tally.get(v, 0) + n


class StoreStats:
    """What the store reports of itself (`Store.stats()`: the cluster
    store's slots held, lease renewals, takeovers, ...), read when scraped;
    a name ending in _total is a counter."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        for name, (doc, value) in sorted(self.store.stats().items()):
            if name.endswith("_total"):
                yield CounterMetricFamily(f"ocs_{name[:-6]}", doc, value=value)
            else:
                yield GaugeMetricFamily(f"ocs_{name}", doc, value=value)


class _Counted:
    def __init__(self, name: str, doc: str, read):
        self.name, self.doc, self.read = name, doc, read

    def collect(self):
        yield CounterMetricFamily(self.name, self.doc, value=self.read())


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.tallies = Tallies()
        r.register(self.tallies)
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
                                        "its answer queued for the socket, journal write included")
        r.register(self.latency)
        ProcessCollector(registry=r)
        self.rules = Gauge("ocs_rules_info", "The rules version in force", ["version"], registry=r)
        self.buffered = Gauge("ocs_peer_buffer_bytes", "Octets held for peers: requests not answered yet and "
                              "answers not written (bounded by peer_buffer_kb each, buffer_mb in all)", registry=r)
        self.stalled = Gauge("ocs_peers_not_read", "Peers not being read because they hold their buffer budget",
                             registry=r)
        self.before_cer = Gauge("ocs_peer_bytes_before_cer", "Octets buffered for connections that have not "
                                "completed their CER (at most 64 KiB each)", registry=r)
        self.journal_failing = Gauge("ocs_journal_failing", "1 while the journal cannot be written (a full or "
                                     "failing disk): requests get 3004, nothing is charged", registry=r)
        self.write_errors = Counter("ocs_write_errors", "Failed writes to the data directory, by what was written: "
                                    "journal, usage, snapshot", ["what"], registry=r)
        self.usage_backlog = Gauge("ocs_usage_backlog_records", "Journal records whose usage records wait to be "
                                   "written (the usage writer is behind or its disk refuses)", registry=r)
        self.dedup_bytes = Gauge("ocs_duplicate_cache_bytes", "Octets of keys and answers in the duplicate cache "
                                 "(bounded by dedup_mb)", registry=r)

    def watch_store(self, store) -> None:
        self.registry.register(StoreStats(store))

    def watch_relay(self, relay) -> None:
        """ocs_relayed_requests: requests relayed to the node of the cluster holding their state."""
        self.registry.register(_Counted("ocs_relayed_requests", "Requests relayed to the cluster node holding "
                                        "their state (docs/cluster.md)", lambda: relay.relayed))

    def count(self, types: np.ndarray, results: list[int]) -> None:
        """Tally one batch of CCRs (request types and top-level Result-Codes)."""
        n = len(results)
        if not n:
            return
        self.batch_size.observe(n)
        if n <= 64:
            _add(self.tallies.requests, zip(types.tolist(), results))
            return
        key = types.astype(np.int64) * 10_000 + np.asarray(results, dtype=np.int64)
        tally: dict[int, int] = {}
        _add_many(tally, key)
        requests = self.tallies.requests
        for v, k in tally.items():
            pair = divmod(v, 10_000)
            requests[pair] = requests.get(pair, 0) + k

    def count_units(self, units: np.ndarray | None) -> None:
        """Tally one batch's charged MSCCs (rg, result, granted, reason):
        grants and denials by rating group, and the limits that stopped
        grants."""
        if units is None or not len(units):
            return
        t = self.tallies
        result = units["result"]
        granted = (result == 2001) & (units["granted"] > 0)
        if granted.all():
            _add_many(t.grants, units["rg"])
        else:
            _add_many(t.grants, units["rg"][granted])
            denied = ~granted & (result != 2001) & (result != 0)
            if denied.any():
                _add(t.denials, zip(units["rg"][denied].tolist(), result[denied].tolist()))
        if len(t.grants) + len(t.denials) > 2 * MAX_RATING_GROUPS:
            t.bound()
        reasons = units["reason"]
        if reasons.any():
            for bit, kind in CAP_KINDS:
                k = int(np.count_nonzero(reasons & bit))
                if k:
                    t.caps[kind] = t.caps.get(kind, 0) + k

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
        self.buffered.set(server.peers.buffered())
        self.stalled.set(sum(p.stalled_since is not None for p in list(server.peers)))
        self.before_cer.set(sum(p.conn.buffered_input for p in list(server.peers) if p.conn.state.name == "WAIT_CER"))
        self.dedup_bytes.set(store.duplicate_cache_bytes)
        self.usage_backlog.set(server.loop.usage_backlog)
        return generate_latest(self.registry)
