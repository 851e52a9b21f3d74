"""Cluster test parts: `ocs cluster init`, nodes as processes, who holds
the slots, and a gateway with a connection to every node that fails over
the way RFC 4006 section 5.7 has it."""
from __future__ import annotations

import random
import subprocess
import sys
import time

import psycopg
import trio

from .gy import MB, TOKEN, api_call
from .rawclient import GyConnection, build_ccr
from .server import DEMO_RULES, ROOT, OcsProcess

OK, UNABLE_TO_DELIVER, TOO_BUSY = 2001, 3002, 3004


def init(dsn: str, rules=DEMO_RULES) -> None:
    out = subprocess.run([sys.executable, "-m", "ocs.cli", "cluster", "init", "--store", dsn, "--rules", str(rules)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr


def node(dsn: str, name: str, data, lease: float = 2.0) -> OcsProcess:
    """`ocs serve --store DSN --node NAME` with the API, not started."""
    return OcsProcess(data / name, extra=["--store", dsn, "--node", name, "--lease-seconds", str(lease),
                                          "--api", "127.0.0.1:0", "--origin-host", f"{name}.ocs.test"],
                      env={"OCS_API_TOKENS": TOKEN}, log=data / f"{name}.log")


async def totals(api: str, subscribers) -> dict[str, int]:
    """Octets each subscriber used this period, by a node's API."""
    got = {}
    for msisdn in subscribers:
        status, view = await api_call(api, "GET", f"/v1/subscribers/{msisdn}")
        assert status == 200, view
        got[msisdn] = view["total_octets_this_period"]
    return got


def owner(dsn: str) -> str | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT DISTINCT node FROM ocs_slot").fetchall()
    owners = {r[0] for r in rows}
    return owners.pop() if len(owners) == 1 else None


class Gateway:
    """A PGW with a connection to every node: it sends each session's next
    CCR-U when the last is answered, and a request that gets no answer within
    Tx (the node died or cannot write) or a protocol error that says "try
    another" (3004, 3002) goes again, the same End-to-End-Identifier with the
    T flag, to the next node."""

    def __init__(self, name: str, ports: dict[str, int], tx: float = 3.0):
        self.name, self.ports = name, ports
        self.tx = tx                             # seconds to wait for an answer (Tx, RFC 4006 section 13)
        self.conns: dict[str, GyConnection] = {}
        self.used: dict[str, int] = {}           # MSISDN -> octets reported in answered requests
        self.answered = 0
        self.retransmitted = 0
        self.last_ok: dict[str, float] = {}      # node (the Origin-Host of the answer) -> when it last answered 2001

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
            a = None
            if c is not None:
                with trio.move_on_after(self.tx):
                    a = await c.request(req, retransmit=again)
            if a is not None and a.result_code == OK:
                self.answered += 1
                self.last_ok[a.origin_host.decode().removesuffix(".ocs.test")] = time.monotonic()
                return
            assert a is None or a.result_code in (TOO_BUSY, UNABLE_TO_DELIVER), f"{node}: result {a.result_code}"
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


