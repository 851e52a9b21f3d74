"""Prometheus metrics (prometheus-client), served at /metrics on the API address.

Counted per batch, not per request: a batch's request types and result codes
are tallied with numpy and each distinct pair increments its counter once,
so the hot path pays a few microseconds per batch, not per request. Gauges
(peers by state, open sessions, held reservations) are read when scraped.
"""
from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .engine.tables import SLOT_FREE

REQUEST_TYPES = {1: "INITIAL", 2: "UPDATE", 3: "TERMINATE", 4: "EVENT"}


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
