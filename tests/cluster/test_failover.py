"""Three `ocs serve --store` nodes on a real PostgreSQL primary and
synchronous standby, gateways sending pipelined CCRs, and the node holding
the slots killed (`kill -9`) again and again: every request is answered in
the end (a gateway retransmits, T flag set, to another node, RFC 4006
section 5.7), every answered debit is there once, none twice; the time
from the kill to the first answer of the node that took over is reported."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import psycopg
import pytest
import trio

from tests.support.gy import MB, TOKEN, api_call
from tests.support.rawclient import GyConnection, build_ccr
from tests.support.server import DEMO_RULES, ROOT, OcsProcess

OK, TOO_BUSY = 2001, 3004
KILLS = int(os.environ.get("OCS_FAILOVER_KILLS", "5"))     # make bench: 100
LEASE = 2.0


def owner(dsn: str) -> str | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT DISTINCT node FROM ocs_slot").fetchall()
    owners = {r[0] for r in rows}
    return owners.pop() if len(owners) == 1 else None


class Gateway:
    """A PGW with a connection to every node: it sends each session's next
    CCR-U when the last is answered, and a request that gets no answer (the
    node died) or 3004 (that node holds no slots) goes again, the same
    End-to-End-Identifier with the T flag, to the next node."""

    def __init__(self, name: str, ports: dict[str, int]):
        self.name, self.ports = name, ports
        self.conns: dict[str, GyConnection] = {}
        self.used: dict[str, int] = {}           # MSISDN -> octets reported in answered requests
        self.answered = 0
        self.retransmitted = 0
        self.last_ok: dict[str, float] = {}      # node -> when it last answered 2001

    async def conn(self, node: str, nursery) -> GyConnection | None:
        c = self.conns.get(node)
        if c is None or c.closed.is_set():
            c = GyConnection(origin_host=f"{self.name}.test.example")
            try:
                await c.connect(self.ports[node], nursery)
            except OSError:
                return None
            self.conns[node] = c
        return c

    async def send(self, req, nursery) -> None:
        nodes = list(self.ports)
        at, again = random.randrange(len(nodes)), False
        while True:
            node = nodes[at % len(nodes)]
            c = await self.conn(node, nursery)
            a = await c.request(req, retransmit=again) if c is not None else None
            if a is not None and a.result_code == OK:
                self.answered += 1
                self.last_ok[node] = time.monotonic()
                return
            assert a is None or a.result_code == TOO_BUSY, f"{node}: result {a.result_code}"
            at += 1
            again = True
            self.retransmitted += 1
            if at % len(nodes) == 0:
                await trio.sleep(0.05)

    async def session(self, msisdn: str, stop: trio.Event, nursery) -> None:
        sid = f"{self.name};{msisdn};{random.getrandbits(32)}"
        await self.send(build_ccr(f"{self.name}.test.example", sid, 1, 0, msisdn, [{"rg": 1, "rsu": 10 * MB}]),
                        nursery)
        n = 1
        while not stop.is_set():
            used = random.randrange(1, 10 * MB)
            await self.send(build_ccr(f"{self.name}.test.example", sid, 2, n, None,
                                      [{"rg": 1, "rsu": 10 * MB, "used": used}]), nursery)
            self.used[msisdn] = self.used.get(msisdn, 0) + used
            n += 1
        used = random.randrange(0, MB)
        await self.send(build_ccr(f"{self.name}.test.example", sid, 3, n, None, [{"rg": 1, "used": used}]),
                        nursery)
        self.used[msisdn] = self.used.get(msisdn, 0) + used


@pytest.fixture
def nodes(cluster_dsn, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ocs.cli", "cluster", "init", "--store", cluster_dsn, "--rules",
                          str(DEMO_RULES)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    procs = {}

    def start(name: str) -> OcsProcess:
        p = OcsProcess(tmp_path / name, extra=["--store", cluster_dsn, "--node", name, "--lease-seconds", str(LEASE),
                                               "--api", "127.0.0.1:0"],
                       env={"OCS_API_TOKENS": TOKEN}, log=tmp_path / f"{name}.log")
        procs[name] = p.start()
        return p
    for name in ("a", "b", "c"):
        start(name)
    yield procs, start
    for p in procs.values():
        p.kill()


def test_kill_the_node_holding_the_slots_again_and_again(nodes, cluster_dsn, record_property):
    procs, start = nodes
    subscribers = [f"86139000{i:05d}" for i in range(1, 61)]
    gateways = [Gateway(f"pgw{i}", {}) for i in range(3)]
    takeovers = []

    def peers():
        return {name: p.port for name, p in procs.items()}

    async def kills():
        await trio.sleep(1.5)
        for _ in range(KILLS):
            victim = owner(cluster_dsn)
            assert victim is not None, "the slots are not held by one node"
            procs[victim].kill()
            killed = time.monotonic()
            def first_answer():      # from another node, after the kill
                times = [t for g in gateways for node, t in g.last_ok.items() if node != victim and t > killed]
                return min(times) if times else None
            with trio.fail_after(30):
                while first_answer() is None:
                    await trio.sleep(0.005)
            takeovers.append(first_answer() - killed)
            await trio.to_thread.run_sync(start, victim)        # it comes back, and stands by
            for g in gateways:
                g.ports = peers()
            await trio.sleep(1.0)

    async def main():
        for g in gateways:
            g.ports = peers()
        stop = trio.Event()
        with trio.fail_after(120 + 30 * KILLS):
            await run(stop)

    async def run(stop):
        async with trio.open_nursery() as readers:
            async with trio.open_nursery() as sessions:
                for i, msisdn in enumerate(subscribers):
                    sessions.start_soon(gateways[i % 3].session, msisdn, stop, readers)
                await kills()
                stop.set()
            readers.cancel_scope.cancel()

    trio.run(main)
    record_property("takeover_seconds", [round(t, 3) for t in takeovers])
    print(f"takeover after kill -9, s: {[round(t, 2) for t in takeovers]}; answered "
          f"{sum(g.answered for g in gateways)}, retransmitted {sum(g.retransmitted for g in gateways)}",
          file=sys.stderr)
    active = procs[owner(cluster_dsn)]

    async def totals():
        got = {}
        for msisdn in subscribers:
            status, view = await api_call(active.api, "GET", f"/v1/subscribers/{msisdn}")
            assert status == 200, view
            got[msisdn] = view["total_octets_this_period"]
        return got
    want = {}
    for g in gateways:
        want.update(g.used)
    # every answered report is counted once: none lost in a kill, none counted again after it
    assert trio.run(totals) == want
    assert all(t < 10 for t in takeovers), takeovers
