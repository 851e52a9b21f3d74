"""The cluster store under PostgreSQL faults, with real nodes and gateways:
- the primary killed (kill -9) and the standby promoted (pg_ctl promote)
  under load: nothing acknowledged is lost, the nodes find the new primary
  by themselves (the DSN names both hosts, target_session_attrs=read-write);
- a node cut off from PostgreSQL alone (a proxy between them stops passing
  anything): it stops answering 2001 before its lease lapses, another node
  takes its slots, and once the way is open again it writes nothing stale:
  it finds itself fenced and exits (75) to join again as a new member."""
from __future__ import annotations

import sys
import time

import psycopg
import pytest
import trio

from tests.support.cluster import OK, TOO_BUSY, UNABLE_TO_DELIVER, Gateway, init, node, owner, totals
from tests.support.gy import MB
from tests.support.pg import PgPair
from tests.support.proxy import CuttingProxy
from tests.support.rawclient import GyConnection, build_ccr

SUBSCRIBERS = [f"861390005{i:04d}" for i in range(1, 31)]


async def run_load(gateways, during, subscribers=SUBSCRIBERS, limit: float = 180):
    """Sessions for every subscriber until `during()` returns; then CCR-T."""
    with trio.fail_after(limit):
        await _run_load(gateways, during, subscribers)


async def _run_load(gateways, during, subscribers):
    stop = trio.Event()
    async with trio.open_nursery() as readers:
        async with trio.open_nursery() as sessions:
            for i, msisdn in enumerate(subscribers):
                sessions.start_soon(gateways[i % len(gateways)].session, msisdn, stop, readers)
            await during()
            stop.set()
        readers.cancel_scope.cancel()


def used(gateways) -> dict[str, int]:
    want = {}
    for g in gateways:
        want.update(g.used)
    return want


@pytest.fixture
def own_pg():
    """A primary and standby of this test's own: it promotes the standby."""
    pair = PgPair().start()
    yield pair
    pair.stop()


def test_primary_killed_and_standby_promoted_under_load(own_pg, tmp_path):
    dsn = own_pg.dsn
    init(dsn)
    a, b = node(dsn, "a", tmp_path).start(), node(dsn, "b", tmp_path).start()
    try:
        gateways = [Gateway(f"pgw{i}", {"a": a.port, "b": b.port}) for i in range(2)]

        async def during():
            await trio.sleep(1.5)
            answered = sum(g.answered for g in gateways)
            own_pg.primary.kill()                       # with its acknowledged commits on the standby
            await trio.sleep(0.5)
            await trio.to_thread.run_sync(own_pg.standby.promote)
            promoted = time.monotonic()
            with trio.fail_after(60):                   # the nodes find the new primary by themselves
                while not any(t > promoted for g in gateways for t in g.last_ok.values()):
                    await trio.sleep(0.05)
            assert sum(g.answered for g in gateways) > answered
            await trio.sleep(1.5)

        trio.run(run_load, gateways, during)
        holder = {"a": a, "b": b}[owner(dsn)]
        assert trio.run(totals, holder.api, SUBSCRIBERS) == used(gateways)
    finally:
        a.kill()
        b.kill()


def test_a_node_cut_off_from_postgresql_stops_and_writes_nothing_stale(pg, cluster_dsn, tmp_path):
    init(cluster_dsn)
    proxy = CuttingProxy(pg.primary.port)
    db = cluster_dsn.split("dbname=")[1].split()[0]
    cut_dsn = f"host=127.0.0.1 port={proxy.port} user=ocs dbname={db}"
    a = node(cut_dsn, "a", tmp_path).start()            # a reaches PostgreSQL only through the proxy
    b = node(cluster_dsn, "b", tmp_path).start()
    try:
        assert owner(cluster_dsn) == "a"
        gateways = [Gateway("pgw0", {"a": a.port, "b": b.port})]
        seen = {}

        async def during():
            await trio.sleep(1.0)
            proxy.partition()
            cut = time.monotonic()
            with psycopg.connect(cluster_dsn, autocommit=True) as conn:
                seen["seq"], left = conn.execute(
                    "SELECT seq, extract(epoch FROM expires - now()) FROM ocs_node JOIN ocs_lease ON node = name "
                    "WHERE name = 'a'").fetchone()
            seen["lapses_after"] = float(left) + (time.monotonic() - cut)   # a's lease, on the database's clock
            # a answers 3004 (nothing charged) before its lease could lapse; requests it took
            # before that wait for a write that cannot be made, unanswered: a probe every 50 ms,
            # each waiting on its own
            refused = trio.Event()

            async def probe_once(conn, k):
                ans = await conn.request(build_ccr("probe.test.example", f"probe;{k}", 1, 0, "8613900090001",
                                                   [{"rg": 1, "rsu": MB}]))
                if ans is not None and not refused.is_set():
                    assert ans.result_code == TOO_BUSY, ans.result_code
                    seen["refused_after"] = time.monotonic() - cut
                    refused.set()

            async with trio.open_nursery() as n:
                probe = GyConnection(origin_host="probe.test.example")
                await probe.connect(a.port, n)
                with trio.fail_after(10):
                    k = 0
                    while not refused.is_set():
                        n.start_soon(probe_once, probe, k)
                        k += 1
                        await trio.sleep(0.05)
                n.cancel_scope.cancel()
            # b takes the slots over once a's lease lapsed, and answers
            with trio.fail_after(30):
                while owner(cluster_dsn) != "b" or not any(t > cut for t in gateways[0].last_ok.values()):
                    await trio.sleep(0.05)
            proxy.heal()
            with trio.fail_after(30):                    # a finds itself fenced, and stops
                while a.proc.poll() is None:
                    await trio.sleep(0.05)
            await trio.sleep(1.0)

        trio.run(run_load, gateways, during)
        print(f"cut off: 3004 after {seen['refused_after']:.2f} s, the lease lapsed after {seen['lapses_after']:.2f} s",
              file=sys.stderr)
        assert seen["refused_after"] < seen["lapses_after"], seen        # a stops before its lease lapses
        assert a.proc.returncode == 75, a.output()[-2000:]
        assert "fenced" in a.output()
        with psycopg.connect(cluster_dsn, autocommit=True) as conn:
            # nothing a had under way when it was cut off was written after b took over
            late = conn.execute("SELECT count(*) FROM ocs_batch WHERE node = 'a' AND seq > %s",
                                (seen["seq"],)).fetchone()[0]
        assert late <= 1, late         # at most the batch whose COMMIT was on its way at the cut
        assert trio.run(totals, b.api, SUBSCRIBERS) == used(gateways)
    finally:
        proxy.heal()
        a.kill()
        b.kill()
        proxy.close()


def test_a_node_standing_by_relays_and_takes_over(cluster_dsn, tmp_path):
    """A node holding no slots relays to the holder; when the holder dies it
    answers with a protocol error (3002, the E bit: the gateway goes to
    another peer) until the holder's lease lapses, then charges itself."""
    init(cluster_dsn)
    a = node(cluster_dsn, "a", tmp_path).start()
    b = node(cluster_dsn, "b", tmp_path).start()
    try:
        async def main():
            async with trio.open_nursery() as n:
                c = GyConnection(origin_host="pgw.test.example")
                await c.connect(b.port, n)

                async def ccr(k):
                    return await c.request(build_ccr("pgw.test.example", f"s;{k}", 1, 0, "8613900080001",
                                                     [{"rg": 1, "rsu": MB}]))
                assert (await ccr(0)).result_code == OK             # relayed to a
                a.kill()
                killed = time.monotonic()
                codes = []
                with trio.fail_after(20):
                    while True:
                        ans = await ccr(len(codes) + 1)
                        codes.append(ans.result_code)
                        if ans.result_code == OK:
                            break
                        assert ans.header.is_error and ans.result_code in (UNABLE_TO_DELIVER, TOO_BUSY), codes
                        await trio.sleep(0.1)
                took = time.monotonic() - killed
                assert took < 5, took
                n.cancel_scope.cancel()
        trio.run(main)
        assert owner(cluster_dsn) == "b"
    finally:
        a.kill()
        b.kill()
