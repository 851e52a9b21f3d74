"""A load test from start to end: K gateways, the clock, storms, the report.

The clock (one trio task) owns the phases, measured from the moment every
gateway has its CEA: warm-up, measured interval, drain. It snapshots the
shared counters at each boundary and once a second for the time series, and
draws the progress line. Traffic ends at warm-up + duration, or once the
measured request count has been sent; during the drain every request sent
(or, in an open loop, scheduled) before the end is still answered or times
out, so none is silently dropped.
"""
from __future__ import annotations

import datetime
import math
import random
import sys
import time

import numpy as np
import trio

from . import report as reporting
from . import schedule as arrivals
from .ccr import CcrTemplates
from .gateway import Gateway, PeerError, now_ns
from .histogram import LatencyHistogram
from .scenario import Scenario, octets, to_dict
from .sessions import Counters, Generator
from .slots import (ANSWERED, CHECK_FAILED, MAX_LATENCY_NS, NEVER_NS, Q_SEND_LIMIT, Q_SENT, SENT,
                    TIMEOUTS, UNMATCHED)

SAMPLE_NS = 1_000_000_000
DRAIN_POLL = 0.02


class LoadTestError(Exception):
    """The test could not run (no connection, a broken peer): not a verdict."""


class Clock:
    """What the gateways read: until when to send, and whether it is over."""

    def __init__(self):
        self.send_until_ns = NEVER_NS
        self.finished = False


def plan_arrivals(sc: Scenario) -> np.ndarray | None:
    load = sc.load
    if load.mode != "open":
        return None
    horizon = load.warmup + (load.duration or load.requests / load.rate * 2 + 10)
    shape = arrivals.Shape(load.rate, load.ramp_from, load.ramp_seconds, load.burst_rate,
                           load.burst_every, load.burst_seconds, load.burst_at)
    return arrivals.build(shape, horizon)


def make_gateways(sc: Scenario, counters: Counters, clock: Clock) -> list[Gateway]:
    """Each gateway its own Origin-Host, sessions and equal share of subscribers."""
    first, last = int(sc.subscribers.first), int(sc.subscribers.last)
    total, k = last - first + 1, sc.gateways.count
    boot = int(time.time() * 1000) & 0xFFFFFFFF  # Session-Ids differ from run to run
    plan = plan_arrivals(sc)
    profiles = [(p.weight, *p.update_range, *p.use_percent, *p.rating_groups)
                for p in sc.sessions.profile]
    max_rg = max(p.rating_groups[1] for p in sc.sessions.profile)
    request = octets(sc.sessions.request_octets)
    slots = sc.load.window if sc.load.mode == "closed" else sc.load.sessions
    draw = random.Random(sc.seed)
    gateways = []
    for i in range(k):
        lo = first + total * i // k
        hi = first + total * (i + 1) // k
        host = sc.origin_host(i)
        templates = CcrTemplates(host, sc.gateways.origin_realm, sc.gateways.destination_realm,
                                 len(sc.subscribers.first), boot, max_rg, request)
        gen = Generator(slots, templates, counters, lo, hi - lo, profiles,
                        sc.sessions.rating_groups, relaxed=sc.judge.relaxed,
                        expected_results=sc.judge.expect_results, request_octets=request,
                        plan_octets=octets(sc.subscribers.plan_octets),
                        timeout_ns=int(sc.load.timeout * 1e9), seed=sc.seed * 7919 + i,
                        # RFC 6733 section 3: the time in the high 12 bits, the
                        # rest random, so gateways' ids do not run in step
                        e2e_base=(boot & 0xFFF) << 20 | draw.getrandbits(20),
                        first_hop_by_hop=draw.getrandbits(32),
                        schedule=plan, stride=k, phase=i)
        gateways.append(Gateway(i, sc.host, sc.port, host, sc.gateways.origin_realm,
                                sc.gateways.host_ip, gen, clock, sc.load.timeout,
                                sc.load.tick, sc.reconnect.delay))
    return gateways


def snapshot(c: Counters) -> reporting.Snapshot:
    return reporting.Snapshot(now_ns(), time.process_time(), c.stats.copy(), c.results.copy(),
                              c.latency.copy(), c.wire.copy())


class Conductor:
    """The clock task's state: phases, series, progress."""

    def __init__(self, sc: Scenario, gateways: list[Gateway], counters: Counters,
                 clock: Clock, progress):
        self.sc, self.gateways, self.counters, self.clock = sc, gateways, counters, clock
        self.progress = progress
        self.series: list[dict] = []
        self.storms = 0
        self.storm_scope = trio.CancelScope()
        self.opened = self.closed = None
        self._last = counters.stats.copy()
        self._last_ns = 0
        self._interval = LatencyHistogram()

    def idle(self, now: int) -> bool:
        until = min(now, self.clock.send_until_ns - 1)
        return all(g.gen.outstanding == 0 and g.gen.retransmit_pending == 0
                   and g.gen.backlog(until) == 0 for g in self.gateways)

    def quota_done(self) -> bool:
        return all(g.gen.seq[Q_SENT] >= g.gen.seq[Q_SEND_LIMIT] for g in self.gateways)

    async def conduct(self, t0: int) -> None:
        load = self.sc.load
        warm_end = t0 + int(load.warmup * 1e9)
        end = warm_end + int(load.duration * 1e9) if load.duration else NEVER_NS
        self.clock.send_until_ns = end
        next_sample = t0 + SAMPLE_NS
        self._last_ns = t0
        phase = "warm-up"
        drain_deadline = None
        while True:
            now = now_ns()
            if now >= next_sample:  # the second that ends now, under its phase
                self._sample(now, t0, phase)
                next_sample += SAMPLE_NS
            if phase == "warm-up" and now >= warm_end:
                self.counters.stats[MAX_LATENCY_NS] = 0
                self.opened = snapshot(self.counters)
                if load.requests:
                    k = len(self.gateways)
                    for i, g in enumerate(self.gateways):
                        g.gen.limit(load.requests * (i + 1) // k - load.requests * i // k)
                phase = "measure"
            if phase == "measure" and (now >= end or (load.requests and self.quota_done()
                                                      and self.idle(now))):
                self.closed = snapshot(self.counters)
                self.clock.send_until_ns = min(end, now)
                drain_deadline = now + int((load.timeout + 2 * load.tick + 1) * 1e9)
                phase = "drain"
            if phase == "drain" and (self.idle(now) or now > drain_deadline):
                for g in self.gateways:
                    g.gen.abandon()  # what is still unanswered now counts as timed out
                self._sample(now, t0, phase)
                self.clock.finished = True
                for g in self.gateways:
                    g.wake()
                if self.progress:
                    self.progress.write("\n")
                return
            wake = min(next_sample, {"warm-up": warm_end, "measure": end}.get(phase, NEVER_NS))
            if phase == "drain" or (phase == "measure" and load.requests):
                wake = min(wake, now + int(DRAIN_POLL * 1e9))  # idle has no deadline
            await trio.sleep(max(0.0, (wake - now_ns()) / 1e9))

    def _sample(self, now: int, t0: int, phase: str) -> None:
        c = self.counters
        delta = c.stats - self._last
        self._last = c.stats.copy()
        self._interval.counts[:] = c.interval
        c.interval[:] = 0
        figures = reporting.latency_figures(self._interval.counts)
        seconds = (now - self._last_ns) / 1e9
        self._last_ns = now
        row = {"t": round((now - t0) / 1e9, 3), "seconds": round(seconds, 3), "phase": phase,
               "sent": int(delta[SENT]), "answered": int(delta[ANSWERED]),
               "errors": int(delta[CHECK_FAILED] + delta[TIMEOUTS] + delta[UNMATCHED]),
               "p50_ms": figures["p50"], "p99_ms": figures["p99"], "max_ms": figures["max"],
               "connected": sum(g.connected for g in self.gateways),
               "outstanding": sum(g.gen.outstanding for g in self.gateways),
               "backlog": sum(g.gen.backlog(min(now, self.clock.send_until_ns - 1))
                              for g in self.gateways)}
        self.series.append(row)
        if self.progress:
            self._draw(row, now, t0)

    def _draw(self, row: dict, now: int, t0: int) -> None:
        load = self.sc.load
        total = load.warmup + load.duration if load.duration else None
        elapsed = (now - t0) / 1e9
        if total:
            done = min(1.0, elapsed / total)
            bar = "#" * int(done * 20) + "." * (20 - int(done * 20))
            where = f"[{bar}] {elapsed:5.0f}/{total:.0f} s"
        else:
            where = f"{elapsed:5.0f} s"
        errors = int(self._last[CHECK_FAILED] + self._last[TIMEOUTS] + self._last[UNMATCHED])
        self.progress.write(
            f"\r{where} {row['phase']:8} {row['answered']:>9,} answers/s  p99 "
            f"{row['p99_ms']:8.3f} ms  errors {errors:,}  gateways "
            f"{row['connected']}/{len(self.gateways)}  backlog {row['backlog']:,}  ")
        self.progress.flush()

    async def reconnect_storms(self, t0: int) -> None:
        """Every `every` seconds, drop a rotating `fraction` of the gateways."""
        rc = self.sc.reconnect
        if rc.every <= 0:
            return
        k = len(self.gateways)
        n = max(1, round(rc.fraction * k))
        with self.storm_scope:
            await self._storms(t0, rc, k, n)

    async def _storms(self, t0, rc, k, n) -> None:
        while True:
            at = t0 + int((rc.at + self.storms * rc.every) * 1e9)
            await trio.sleep(max(0.0, (at - now_ns()) / 1e9))
            if self.clock.finished or now_ns() >= self.clock.send_until_ns:
                return
            start = self.storms * n
            for j in range(n):
                self.gateways[(start + j) % k].drop(rc.graceful)
            self.storms += 1


async def run(sc: Scenario, progress=None) -> reporting.Report:
    """Run one scenario; `progress` is a text stream for the progress line, or None."""
    counters = Counters()
    clock = Clock()
    gateways = make_gateways(sc, counters, clock)
    gateways[0].gen.compile()  # numba: compile (or load the cache) before connecting
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    failures: list[str] = []

    async def connect(g: Gateway):
        try:
            await g.connect()
        except (OSError, PeerError, trio.TooSlowError) as exc:
            failures.append(f"{g.origin_host} could not connect to {sc.target}: "
                            f"{exc or type(exc).__name__}")

    async with trio.open_nursery() as nursery:
        for g in gateways:
            nursery.start_soon(connect, g)
    if failures:
        for g in gateways:
            g.abort()
        raise LoadTestError(failures[0] + (f" (and {len(failures) - 1} more gateways)"
                                           if len(failures) > 1 else ""))
    conductor = Conductor(sc, gateways, counters, clock, progress)
    t0 = now_ns()
    for g in gateways:
        g.gen.start(t0)
    async with trio.open_nursery() as nursery:
        for g in gateways:
            nursery.start_soon(g.run)
        nursery.start_soon(conductor.reconnect_storms, t0)
        await conductor.conduct(t0)
        conductor.storm_scope.cancel()
        nursery.cancel_scope.deadline = trio.current_time() + sc.load.timeout + 5
    final = snapshot(counters)
    connections = {"gateways": len(gateways), "storms": conductor.storms}
    for name in ("connects", "connect_failures", "drops", "server_disconnects",
                 "dwr_answered", "unexpected"):
        connections[name] = sum(getattr(g.counts, name) for g in gateways)
    notes = [f"{g.origin_host}: {text}" + (f" ({n} times)" if n > 1 else "")
             for g in gateways for text, n in g.notes.items()][:20]
    target_rate = sc.load.rate if sc.load.mode == "open" else None
    result = reporting.build(to_dict(sc), sc.target, started, conductor.opened,
                             conductor.closed, final, connections, target_rate,
                             conductor.series, notes)
    if not math.isfinite(result.measured_seconds) or result.measured_seconds <= 0:
        result.notes.append("the measured interval is empty")
    return result


def run_sync(sc: Scenario, progress=None) -> reporting.Report:
    return trio.run(run, sc, progress)


def default_progress(enabled: bool | None):
    """stderr when asked, or by default when it is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return sys.stderr if enabled else None
