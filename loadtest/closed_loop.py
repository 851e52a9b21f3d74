"""Closed-loop Gy load: keep W CCRs in flight against one server for D seconds.

One TCP connection, one trio task. The peer procedures are the client side
of RFC 6733: CER/CEA first (section 5.3), DWA for every DWR (5.5), DPR/DPA
at the end (5.4). Traffic is batched both ways: each wakeup reads everything
the socket has, `Generator.step` (compiled) accounts every answer in it and
encodes the next request of every slot that became free, and they all leave
in one send. Answers received during the warm-up are not counted.

    python -m loadtest.closed_loop --target 127.0.0.1:3868 --window 64 \
        --duration 10 --warmup 2 [--relaxed] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import trio

from . import codec
from .histogram import LatencyHistogram
from .sessions import (ANSWERED, CHECK_FAILED, MALFORMED, MAX_LATENCY_NS,
                       N_RESULT_CODES, STAT_NAMES, TIMEOUTS, UNMATCHED, Generator)

RX_BUFFER = 1 << 22
EXPIRY_TICK_NS = 100_000_000


@dataclass(frozen=True)
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 3868
    window: int = 64
    duration: float = 10.0
    warmup: float = 2.0
    origin_host: str = "pgw1.loadtest.example"
    origin_realm: str = "loadtest.example"
    destination_realm: str = "ocs.example"
    msisdn_first: int = 8613900000000
    msisdn_last: int = 8613900099999
    updates: int = 3
    use_percent: int = 100
    rating_group: int = 10
    relaxed: bool = False
    timeout: float = 5.0
    expected_results: tuple[int, ...] = (2001, 4012)
    drain_timeout: float = 2.0


@dataclass
class LoadResult:
    target: str
    window: int
    seconds: float
    answered: int
    ccr_per_s: float
    latency_ms: dict[str, float]
    result_codes: dict[int, int]
    stats: dict[str, int]
    errors: int
    generator_cpu_percent: float = math.nan  # of one core, while measuring
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lat = self.latency_ms
        codes = ", ".join(f"{c or 'none'}: {n}" for c, n in sorted(self.result_codes.items()))
        s = self.stats
        lines = [
            f"target {self.target}  window {self.window}  measured {self.seconds:.2f} s  "
            f"generator CPU {self.generator_cpu_percent:.0f}%",
            f"answered {self.answered}  ->  {self.ccr_per_s:,.0f} CCR/s",
            "latency ms  p50 {p50:.3f}  p90 {p90:.3f}  p99 {p99:.3f}  "
            "p99.9 {p999:.3f}  max {max:.3f}".format(**lat),
            f"result codes  {codes or '-'}",
            f"sessions started {s['sessions_started']}  completed "
            f"{s['sessions_completed']}  refused {s['refused']}  zero grants {s['zero_grants']}",
            f"octets granted {s['octets_granted']:,}  reported {s['octets_reported']:,}",
            f"errors {self.errors}: check failures {s['check_failed']} (session-id "
            f"{s['fail_session_id']}, request-number {s['fail_request_number']}, "
            f"result-code {s['fail_result_code']}, malformed {s['malformed']}), "
            f"timeouts {s['timeouts']}, unmatched {s['unmatched']}",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


class PeerError(Exception):
    """The server broke the Diameter peer procedures (or the connection)."""


def _now() -> int:
    return time.perf_counter_ns()


async def _handshake(stream, rx: np.ndarray, cfg: LoadConfig) -> int:
    """CER/CEA; returns how many bytes after the CEA are already in rx."""
    await stream.send_all(codec.encode_cer(cfg.origin_host, cfg.origin_realm, hbh=1, e2e=1))
    fill = 0
    while True:
        n = await stream.socket.recv_into(memoryview(rx)[fill:])
        if n == 0:
            raise PeerError("connection closed before CEA")
        fill += n
        frames, _ = codec.split_frames(memoryview(rx)[:fill])
        if frames:
            break
    start, end = frames[0]
    cea = codec.parse_answer(rx[start:end].tobytes())
    if cea.command != codec.CMD_CAPABILITIES_EXCHANGE or cea.is_request:
        raise PeerError(f"expected CEA, got command {cea.command}")
    if cea.result_code != codec.DIAMETER_SUCCESS:
        raise PeerError(f"CEA Result-Code {cea.result_code}")
    rx[:fill - end] = rx[end:fill]
    return fill - end


def _control_answers(gen: Generator, rx: np.ndarray, count: int, cfg: LoadConfig,
                     notes: list[str]) -> tuple[bytes, bool]:
    """Answers to the non-CCA frames of this read, and whether the peer said bye."""
    replies, closing = [], False
    for i in range(count):
        start = int(gen.other[i])
        length = int.from_bytes(rx[start + 1:start + 4].tobytes(), "big")
        msg = codec.parse_answer(rx[start:start + length].tobytes())
        if msg.command == codec.CMD_DEVICE_WATCHDOG and msg.is_request:
            replies.append(codec.encode_dwa(cfg.origin_host, cfg.origin_realm,
                                            msg.hop_by_hop, msg.end_to_end))
        elif msg.command == codec.CMD_DISCONNECT_PEER and msg.is_request:
            replies.append(codec.encode_dpa(cfg.origin_host, cfg.origin_realm,
                                            msg.hop_by_hop, msg.end_to_end))
            notes.append("server sent DPR")
            closing = True
        elif msg.command == codec.CMD_DISCONNECT_PEER:
            closing = True  # our DPA
        elif len(notes) < 20:
            notes.append(f"unexpected message: command {msg.command} flags {msg.flags:#x}")
    return b"".join(replies), closing


class _Window:
    """The measured interval: counters are zeroed when it opens, copied when it closes."""

    def __init__(self, gen: Generator, hist: LatencyHistogram):
        self.gen, self.hist = gen, hist
        self.opened_ns = self.cpu_opened = None
        self.closed = None  # (stats, results, histogram, ns, cpu seconds)

    def open(self, now: int) -> None:
        self.gen.stats[:] = 0
        self.gen.results[:] = 0
        self.hist.reset()
        self.opened_ns, self.cpu_opened = now, time.process_time()

    def close(self, now: int) -> None:
        if self.opened_ns is None:
            raise PeerError("disconnected during the warm-up")
        self.closed = (self.gen.stats.copy(), self.gen.results.copy(), self.hist.copy(),
                       now, time.process_time())

    def result(self, cfg: LoadConfig, notes: list[str]) -> LoadResult:
        stats, results, hist, closed_ns, cpu_closed = self.closed
        seconds = (closed_ns - self.opened_ns) / 1e9
        result = _result(cfg, seconds, stats, results, hist, notes)
        result.generator_cpu_percent = 100 * (cpu_closed - self.cpu_opened) / seconds
        return result


async def run_closed_loop(cfg: LoadConfig) -> LoadResult:
    boot = int(time.time())
    digits = len(str(cfg.msisdn_first))
    if len(str(cfg.msisdn_last)) != digits or cfg.msisdn_last < cfg.msisdn_first:
        raise ValueError("MSISDN range must be ascending with one number of digits")
    templates = codec.CcrTemplates(cfg.origin_host, cfg.origin_realm, cfg.destination_realm,
                                   digits, cfg.rating_group, boot)
    gen = Generator(cfg.window, templates, cfg.msisdn_first,
                    cfg.msisdn_last - cfg.msisdn_first + 1, cfg.updates, cfg.use_percent,
                    cfg.rating_group, cfg.relaxed, cfg.expected_results,
                    e2e_base=(boot & 0xFFF) << 20)  # RFC 6733 section 3
    hist = LatencyHistogram()
    gen.bind_histogram(hist.counts)
    gen.compile()
    window = _Window(gen, hist)
    notes: list[str] = []
    rx = np.zeros(RX_BUFFER, np.uint8)

    stream = await trio.open_tcp_stream(cfg.host, cfg.port)
    async with stream:
        fill = await _handshake(stream, rx, cfg)
        now = _now()
        warm_end = now + int(cfg.warmup * 1e9)
        measure_end = warm_end + int(cfg.duration * 1e9)
        drain_end = measure_end + int(cfg.drain_timeout * 1e9)
        next_expiry = now + EXPIRY_TICK_NS
        while True:
            now = _now()
            if window.opened_ns is None and now >= warm_end:
                window.open(now)
            if window.closed is None and now >= measure_end:
                window.close(now)
            if window.closed and (gen.outstanding == 0 or now > drain_end):
                break
            if now >= next_expiry:
                gen.expire(now, int(cfg.timeout * 1e9))
                next_expiry = now + EXPIRY_TICK_NS
            consumed, n_other, n_out = gen.step(rx, fill, now, window.closed is None)
            if consumed < 0:
                raise PeerError("received bytes that are not a Diameter message")
            control, peer_leaving = _control_answers(gen, rx, n_other, cfg, notes)
            if n_out or control:
                await stream.send_all(gen.out[:n_out].tobytes() + control if control
                                      else memoryview(gen.out)[:n_out])
            if peer_leaving:
                if window.closed is None:
                    window.close(now)
                break
            rx[:fill - consumed] = rx[consumed:fill]
            fill -= consumed
            if fill == len(rx):
                raise PeerError("message larger than the receive buffer")
            phase_end = (warm_end if window.opened_ns is None else
                         measure_end if window.closed is None else drain_end)
            wake_at = min(next_expiry, phase_end)
            with trio.move_on_at(trio.current_time() + (wake_at - _now()) / 1e9):
                n = await stream.socket.recv_into(memoryview(rx)[fill:])
                if n == 0:
                    raise PeerError("server closed the connection")
                fill += n
        if not peer_leaving:
            await _disconnect(stream, cfg)
    return window.result(cfg, notes)


async def _disconnect(stream, cfg: LoadConfig) -> None:
    """DPR, then wait briefly for the DPA (RFC 6733 section 5.4)."""
    await stream.send_all(codec.encode_dpr(cfg.origin_host, cfg.origin_realm, 2, 2))
    with trio.move_on_after(cfg.drain_timeout):
        buf = bytearray()
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                return
            buf += data
            frames, used = codec.split_frames(buf)
            for start, end in frames:
                if int.from_bytes(buf[start + 5:start + 8], "big") == codec.CMD_DISCONNECT_PEER:
                    return
            del buf[:used]


def _ms(ns: int) -> float:
    return ns / 1e6


def _result(cfg, seconds, stats, results, hist: LatencyHistogram, notes) -> LoadResult:
    answered = int(stats[ANSWERED])
    top = int(stats[MAX_LATENCY_NS])
    # A bucket's upper bound may lie above the exact maximum: never report more.
    latency = {name: _ms(min(hist.percentile(q), top))
               for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9))}
    latency["max"] = _ms(top)
    codes = {int(c): int(results[c]) for c in np.flatnonzero(results[:N_RESULT_CODES])}
    errors = int(stats[CHECK_FAILED] + stats[TIMEOUTS] + stats[UNMATCHED])
    assert stats[MALFORMED] <= stats[CHECK_FAILED]
    return LoadResult(f"{cfg.host}:{cfg.port}", cfg.window, seconds, answered,
                      answered / seconds if seconds > 0 else math.nan, latency, codes,
                      dict(zip(STAT_NAMES, map(int, stats))), errors, notes)


def _parse_args(argv=None) -> tuple[LoadConfig, str | None]:
    p = argparse.ArgumentParser(prog="python -m loadtest.closed_loop",
                                description="Closed-loop Diameter Gy load generator")
    p.add_argument("--target", default="127.0.0.1:3868", help="HOST:PORT")
    p.add_argument("--window", type=int, default=64, help="requests in flight")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    p.add_argument("--origin-host", default=LoadConfig.origin_host)
    p.add_argument("--origin-realm", default=LoadConfig.origin_realm)
    p.add_argument("--destination-realm", default=LoadConfig.destination_realm)
    p.add_argument("--msisdns", default=f"{LoadConfig.msisdn_first}-{LoadConfig.msisdn_last}",
                   help="FIRST-LAST subscriber range (same number of digits)")
    p.add_argument("--updates", type=int, default=LoadConfig.updates,
                   help="CCR-Updates per session")
    p.add_argument("--use-percent", type=int, default=LoadConfig.use_percent,
                   help="share of each grant reported as used (0-100)")
    p.add_argument("--rating-group", type=int, default=LoadConfig.rating_group)
    p.add_argument("--timeout", type=float, default=LoadConfig.timeout,
                   help="seconds before an unanswered request counts as a timeout")
    p.add_argument("--expect-results", default="2001,4012",
                   help="Result-Codes that are not check failures")
    p.add_argument("--relaxed", action="store_true",
                   help="match answers by hop-by-hop id only (for the echo server)")
    p.add_argument("--json", help="also write the result to this file")
    a = p.parse_args(argv)
    host, _, port = a.target.rpartition(":")
    first, _, last = a.msisdns.partition("-")
    if not 0 <= a.use_percent <= 100:
        p.error("--use-percent must be within 0..100")
    cfg = LoadConfig(host=host.strip("[]"), port=int(port), window=a.window,
                     duration=a.duration, warmup=a.warmup, origin_host=a.origin_host,
                     origin_realm=a.origin_realm, destination_realm=a.destination_realm,
                     msisdn_first=int(first), msisdn_last=int(last or first),
                     updates=a.updates, use_percent=a.use_percent,
                     rating_group=a.rating_group, relaxed=a.relaxed, timeout=a.timeout,
                     expected_results=tuple(int(x) for x in a.expect_results.split(",")))
    return cfg, a.json


def main(argv=None) -> int:
    cfg, json_path = _parse_args(argv)
    try:
        result = trio.run(run_closed_loop, cfg)
    except (OSError, PeerError) as exc:
        print(f"load test failed: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"config": asdict(cfg), "result": asdict(result)}, fh, indent=2)
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
