"""`kill -9` under pipelined load, many times: no answered debit is lost, none
is applied twice, reservations stay consistent.

Each subscriber runs its sessions one request at a time, so the order of its
reports is known and its final balance can be computed by hand; hundreds of
subscribers run at once on one connection. After every restart the client
retransmits (T-flag, same End-to-End-Identifier) each request that got no
answer: a request the server had journaled must be answered from the
duplicate cache without being charged again, one it had not must be charged
now. In the end every report is charged exactly once, which the balances
show to the octet and the micro-yuan.
"""
from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import trio

from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import OcsProcess, show_subscriber

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
KB, MB = 1024, 1024 * 1024
BUNDLE = 2 * MB                  # plan small-bundle
PRICE_PER_KB_MICRO = 300         # 0.0003 yuan per started KB, in micro-yuan
START_BALANCE_MICRO = 10_000_000  # 10.00 yuan
SUBSCRIBERS = [f"86136000000{i:02d}" for i in range(100)] + [f"8613600000{i:03d}" for i in range(100, 200)]
SESSIONS_EACH, UPDATES_EACH, KILLS = 5, 6, 8


class Subscriber:
    def __init__(self, msisdn: str, rng: random.Random):
        self.msisdn = msisdn
        self.rng = rng
        self.session = 0
        self.step = 0            # 0: CCR-I, 1..UPDATES_EACH: CCR-U, then CCR-T
        self.granted = 0
        self.pending = None      # (request, used) sent but not answered
        self.reports: list[int] = []   # used octets of every answered report, in order

    @property
    def done(self) -> bool:
        return self.session >= SESSIONS_EACH

    def next_request(self, host: str):
        sid = f"{host};{self.msisdn};{self.session}"
        n = self.step
        if n == 0:
            return build_ccr(host, sid, 1, n, self.msisdn, [{"rg": 7, "rsu": 0}]), 0
        used = self.rng.randint(0, self.granted)
        if n <= UPDATES_EACH and self.granted:
            return build_ccr(host, sid, 2, n, None, [{"rg": 7, "rsu": 0, "used": used}]), used
        return build_ccr(host, sid, 3, n, None, [{"rg": 7, "used": used}]), used

    def answered(self, answer, used: int) -> None:
        assert answer.result_code in (2001, 4012), answer.result_code
        self.reports.append(used)
        rtype = answer.cc_request_type
        if rtype == 3:
            self.session += 1
            self.step = 0
            self.granted = 0
            return
        got = mscc_values(answer).get(7, {})
        self.granted = got.get("granted") or 0
        self.step += 1
        if not self.granted:
            self.step = UPDATES_EACH + 1     # no more quota: terminate the session


def expected_balance(reports: list[int]) -> tuple[int, int]:
    """Bundle first, then 0.0003 yuan per started KB of each report's overage."""
    used, balance = 0, START_BALANCE_MICRO
    for u in reports:
        from_bundle = min(u, max(BUNDLE - used, 0))
        used += from_bundle
        over = u - from_bundle
        balance -= -(-over // KB) * PRICE_PER_KB_MICRO
    return used, balance


async def drive(conn: GyConnection, subs: list[Subscriber], stop: trio.Event) -> None:
    async def one(s: Subscriber):
        while not s.done and not stop.is_set():
            retransmit = s.pending is not None
            if s.pending is None:
                s.pending = s.next_request(conn.origin_host)
            req, used = s.pending
            answer = await conn.request(req, retransmit=retransmit)
            if answer is None:
                return                      # server gone: keep it pending for the next round
            s.answered(answer, used)
            s.pending = None

    async with trio.open_nursery() as n:
        for s in subs:
            n.start_soon(one, s)


async def _rounds(server: OcsProcess, subs: list[Subscriber], rng: random.Random) -> tuple[int, int]:
    """Run the load, killing the server KILLS times; returns (kills, requests
    that were unanswered at a kill and retransmitted)."""
    retransmitted = kills = 0
    for round_no in range(KILLS + 1):
        await trio.to_thread.run_sync(server.start)
        retransmitted += sum(s.pending is not None for s in subs)
        conn = GyConnection(origin_host="pgw.crash.example")
        killed = False

        async def killer():
            # Stop reading answers a moment before the kill, so the server
            # has journaled requests whose answers the client never sees.
            nonlocal killed
            await trio.sleep(rng.uniform(0.2, 1.0))
            conn.hold_answers()
            await trio.sleep(rng.uniform(0, 0.2))
            os.kill(server.proc.pid, signal.SIGKILL)
            killed = True
            n.cancel_scope.cancel()

        async with trio.open_nursery() as n:
            await conn.connect(server.port, n)
            if round_no < KILLS:
                n.start_soon(killer)
            await drive(conn, subs, trio.Event())
            n.cancel_scope.cancel()
        await conn.aclose()
        if killed:
            kills += 1
            await trio.to_thread.run_sync(server.proc.wait)
            server.kill()
        elif all(s.done for s in subs):
            break
    return kills, retransmitted


async def test_kill_minus_nine_under_load(tmp_path):
    rng = random.Random(20261122)
    subs = [Subscriber(m, random.Random(rng.random())) for m in SUBSCRIBERS]
    cfg = tmp_path / "ocs.toml"
    cfg.write_text("snapshot_journal_mb = 1\n")   # snapshots during the load, so kills land around them too
    server = OcsProcess(tmp_path / "data", rules=RULES, config=cfg)
    try:
        with trio.fail_after(300):
            kills, retransmitted = await _rounds(server, subs, rng)
            assert all(s.done for s in subs), "load did not finish"
            states = await trio.to_thread.run_sync(show_subscriber, server.data, SUBSCRIBERS, RULES)
            code = await trio.to_thread.run_sync(server.stop)
    finally:
        server.kill()
    assert code == 0
    assert kills >= 3 and retransmitted > 0, "too few kills under load: the test proved little"
    for s, state in zip(subs, states):
        used, balance = expected_balance(s.reports)
        assert state["bundle"]["used_octets"] == used, s.msisdn
        assert state["balance_micro"] == balance, s.msisdn
        assert state["reservations"] == [] and state["bundle"]["reserved_octets"] == 0, s.msisdn
        assert state["reserved_money"] in ("0", "0.00"), s.msisdn
    # every answered report has exactly one usage record, across the kills (docs/usage.md)
    import json
    octets: dict[str, int] = {}
    for f in sorted((server.data / "usage").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            octets[r["subscriber"]] = octets.get(r["subscriber"], 0) + r["octets"]
    for s in subs:
        assert octets.get(s.msisdn, 0) == sum(s.reports), s.msisdn
