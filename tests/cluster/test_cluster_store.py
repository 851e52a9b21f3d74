"""The cluster store against a real PostgreSQL primary and synchronous
standby, in process (tests/support/charging.py drives the Gy application
as the charging loop does): the same traffic gives the same answers and
state as the embedded store; a node's state comes back after a crash and
on another node; a fenced node writes nothing; a COMMIT whose answer was
lost is read back, never written twice."""
from __future__ import annotations

import shutil
import time

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs.store.errors import Fenced, StoreUnavailable
from tests.support.charging import Charging
from tests.support.cluster import init
from tests.support.gy import GB, MB
from tests.support.proxy import CuttingProxy
from tests.support.rawclient import build_ccr, mscc_values
from tests.support.server import DEMO_RULES

OK = 2001
MSISDNS = ["8613800000001", "8613800000002", "8613800000004", "8613800000006", "8613800000011",
           "8613800000012", "8613800000014", "8613800000021", "8613800000022", "8613900000007", "8613900054321"]


def sql(dsn: str, query: str, args=()):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else cur.rowcount


def views(c: Charging, numbers) -> dict:
    out = {}
    for n in numbers:
        v = c.view(n)
        v.pop("rules_version", None)
        out[n] = v
    return out


def session(c: Charging, sid: str, msisdn: str, now: float, *steps) -> list[dict]:
    """CCR-I, then CCR-U for each (used, rsu) step, each a batch; MSCC values."""
    got = [mscc_values(c.batch(build_ccr("pgw.test", sid, 1, 0, msisdn, [{"rg": 1, "rsu": 1 * GB}]), now=now)[0])]
    for i, (used, rsu) in enumerate(steps, 1):
        got.append(mscc_values(c.batch(build_ccr("pgw.test", sid, 2, i, None, [{"rg": 1, "rsu": rsu, "used": used}]),
                                       now=now + i)[0]))
    return got


@pytest.fixture
def cluster(cluster_dsn, tmp_path):
    init(cluster_dsn)
    nodes = []

    def node(name: str) -> Charging:
        c = Charging(tmp_path / name, DEMO_RULES, cluster=(cluster_dsn, name))
        nodes.append(c)
        return c
    yield node
    for c in nodes:
        c.store._stop.set()


def test_a_crashed_node_and_another_node_recover_the_same_state(cluster, cluster_dsn, tmp_path):
    """Charged on node a; a crashes and starts again: the same state; a
    stops, b takes the slots: the same state, and charging goes on there."""
    a = cluster("a")
    assert a.store.unavailable is None and len(a.store.owned) == a.store.n_slots + 1
    now = time.time()
    # 8613800000002: 1 GB bundle, then 0.0003 yuan a KB out of it, balance 1,000 yuan
    got = session(a, "s-cm", "8613800000002", now, (1 * GB, 1 * GB), (1 * GB, 1 * GB))
    assert [g[1]["result"] for g in got] == [OK, OK, OK]
    # family pool: 10 GB shared by 11..14
    session(a, "s-vz", "8613800000012", now, (300 * MB, 500 * MB))
    before = views(a, MSISDNS)
    assert before["8613800000002"]["balance"] == "685.4272"          # 1000 - 1,048,576 KB x 0.0003
    a2 = a.crash()
    assert views(a2, MSISDNS) == before
    a2.store.snapshot()                                  # a snapshot, then records after it
    session(a2, "s-cm2", "8613800000004", now + 10, (100 * MB, 100 * MB))
    before = views(a2, MSISDNS)
    a2.store.close()                                     # hands the slots back at once
    b = cluster("b")
    assert len(b.store.owned) == b.store.n_slots + 1
    assert views(b, MSISDNS) == before
    # the open sessions came along: a's session goes on at b
    g = mscc_values(b.batch(build_ccr("pgw.test", "s-cm2", 2, 2, None, [{"rg": 1, "rsu": 100 * MB,
                                                                         "used": 100 * MB}]), now=now + 20)[0])
    assert g[1]["result"] == OK


def test_a_fenced_node_writes_nothing(cluster, cluster_dsn):
    a = cluster("a")
    now = time.time()
    session(a, "s1", "8613800000004", now, (10 * MB, 10 * MB))
    written = sql(cluster_dsn, "SELECT count(*) FROM ocs_journal")[0][0]
    # another node fences a out (what a takeover does once a's lease lapsed)
    sql(cluster_dsn, "UPDATE ocs_node SET epoch = epoch + 1 WHERE name = 'a'")
    with pytest.raises(Fenced):
        session(a, "s2", "8613800000001", now + 5)
    assert sql(cluster_dsn, "SELECT count(*) FROM ocs_journal")[0][0] == written
    assert a.store.unavailable is not None and "fenced" in a.store.unavailable


def test_a_slot_taken_by_another_node_is_not_written(cluster, cluster_dsn):
    a = cluster("a")
    now = time.time()
    session(a, "s1", "8613800000004", now)
    slot = int(a.store.slot_of_row[a.row("8613800000004")])
    written = sql(cluster_dsn, "SELECT count(*) FROM ocs_journal")[0][0]
    sql(cluster_dsn, "UPDATE ocs_slot SET node = 'b', epoch = epoch + 1 WHERE slot = %s", (slot,))
    with pytest.raises(Fenced):
        a.batch(build_ccr("pgw.test", "s1", 2, 1, None, [{"rg": 1, "rsu": MB, "used": MB}]), now=now + 1)
    assert sql(cluster_dsn, "SELECT count(*) FROM ocs_journal")[0][0] == written


def test_a_lapsed_lease_stops_writes_until_renewed(cluster, cluster_dsn):
    a = cluster("a")
    a.store._stop.set()                 # the lease is no longer renewed (a paused thread, a lost route)
    time.sleep(a.store.lease_seconds)
    assert "lapsed" in a.store.unavailable
    written = sql(cluster_dsn, "SELECT count(*) FROM ocs_batch")[0][0]
    with pytest.raises(StoreUnavailable):
        session(a, "s1", "8613800000004", time.time())
    assert sql(cluster_dsn, "SELECT count(*) FROM ocs_batch")[0][0] == written


def test_a_commit_whose_answer_is_lost_is_read_back_not_written_twice(cluster_dsn, pg, tmp_path):
    """The connection is cut after COMMIT reached PostgreSQL and before its
    answer came back: the write fails (nothing acknowledged); written again
    with the same records, the store reads back that they committed and
    writes nothing more."""
    init(cluster_dsn)
    proxy = CuttingProxy(pg.primary.port)
    dsn = f"host=127.0.0.1 port={proxy.port} user=ocs dbname={cluster_dsn.split('dbname=')[1].split()[0]}"
    a = Charging(tmp_path / "a", DEMO_RULES, cluster=(dsn, "a"))
    try:
        now = time.time()
        session(a, "s0", "8613800000004", now)
        proxy.cut_after_commit = True
        result = a.app.process([build_ccr("pgw.test", "s1", 1, 0, "8613800000001", [{"rg": 1, "rsu": MB}])
                                .as_bytes()], now + 1)
        with pytest.raises(StoreUnavailable, match="unknown"):
            a.store.write(result.record)
        assert proxy.cuts == 1
        assert a.store.write(result.record) == 0         # read back: it had committed
        rows = sql(cluster_dsn, "SELECT seq FROM ocs_batch WHERE node = 'a' ORDER BY seq")
        assert [r[0] for r in rows] == [1, 2]
        # and a write that did not commit is made: the next batch
        session(a, "s2", "8613800000002", now + 2)
        assert sql(cluster_dsn, "SELECT max(seq) FROM ocs_batch")[0][0] == 3
    finally:
        a.store._stop.set()
        proxy.close()


def test_a_new_rules_version_is_carried_over_at_the_next_start(cluster_dsn, tmp_path):
    """`ocs cluster init --rules NEW` puts a version in force; a node starting
    finds the rows written under the old one, brings them back under it and
    carries them over (as a restart with new rules does): balances kept, the
    new price charged from then on."""
    init(cluster_dsn)
    a = Charging(tmp_path / "a", DEMO_RULES, cluster=(cluster_dsn, "a"))
    now = time.time()
    session(a, "s-cm", "8613800000002", now, (1 * GB, 1 * GB), (1 * GB, 1 * GB))   # the bundle; 1,048,576 KB at 0.0003
    assert a.view("8613800000002")["balance"] == "685.4272"
    a.store.close()
    new = tmp_path / "rules-new"
    shutil.copytree(DEMO_RULES, new)
    plans = new / "plans.toml"
    text = plans.read_text()
    assert 'overage = { price = "0.0003", per = "1 KB" }' in text
    plans.write_text(text.replace('overage = { price = "0.0003", per = "1 KB" }',
                                  'overage = { price = "0.0006", per = "1 KB" }', 1))
    init(cluster_dsn, new)
    b = Charging(tmp_path / "b", new, cluster=(cluster_dsn, "b"))
    try:
        assert b.store.rules_version == b.rules.version != a.rules.version
        assert b.view("8613800000002")["balance"] == "685.4272"
        # the session a opened goes on at b: 100 MB out of the bundle at the new price,
        # 102,400 KB x 0.0006 = 61.44
        g = mscc_values(b.batch(build_ccr("pgw.test", "s-cm", 2, 3, None, [{"rg": 1, "rsu": 0, "used": 100 * MB}]),
                                now=now + 10)[0])
        assert g[1]["result"] == OK
        assert b.view("8613800000002")["balance"] == "623.9872"
        # every slot was snapshotted under the new version: a third node needs no carrying over
        with psycopg.connect(cluster_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM ocs_snapshot").fetchone()[0] == b.store.n_slots + 1
    finally:
        b.store._stop.set()


# ---------------------------------------------------------------- differential
steps = st.lists(st.tuples(st.sampled_from(MSISDNS), st.integers(0, 3),
                           st.lists(st.integers(0, 600), min_size=1, max_size=4)), min_size=1, max_size=6)


@pytest.fixture(scope="module")
def twins(pg, tmp_path_factory):
    """One embedded store and one cluster node, fed the same traffic."""
    d = tmp_path_factory.mktemp("twins")
    dsn = pg.database("ocs_twins")
    init(dsn)
    embedded = Charging(d / "embedded", DEMO_RULES)
    node = Charging(d / "node", DEMO_RULES, cluster=(dsn, "twin"))
    yield embedded, node, dsn
    node.store._stop.set()


_sessions = iter(range(1, 1 << 30))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traffic=steps)
def test_the_same_traffic_gives_the_same_answers_and_state(twins, traffic):
    """Sessions on the demo plans (MB used per update, some reported past the
    grant), each request one batch on both stores: the same MSCC answers,
    the same subscriber views, also after the node crashes and recovers."""
    embedded, node, dsn = twins
    now = time.time()
    touched = set()
    for msisdn, rg_pick, used in traffic:
        rg = (1, 1, 300, 310)[rg_pick]
        sid = f"diff-{next(_sessions)}"
        touched.add(msisdn)
        reqs = [build_ccr("pgw.test", sid, 1, 0, msisdn, [{"rg": rg, "rsu": 200 * MB}])]
        reqs += [build_ccr("pgw.test", sid, 2, i, None, [{"rg": rg, "rsu": 200 * MB, "used": u * MB}])
                 for i, u in enumerate(used[:-1], 1)]
        reqs.append(build_ccr("pgw.test", sid, 3, len(used), None, [{"rg": rg, "used": used[-1] * MB}]))
        for t, req in enumerate(reqs):
            want = embedded.batch(req, now=now + t)[0]
            got = node.batch(req, now=now + t)[0]
            assert (got.header.command_code, mscc_values(got), _result(got)) == \
                   (want.header.command_code, mscc_values(want), _result(want))
    assert views(node, touched) == views(embedded, touched)


def test_twins_agree_after_the_node_recovers(twins):
    embedded, node, dsn = twins
    recovered = node.crash()
    assert views(recovered, MSISDNS) == views(embedded, MSISDNS)
    recovered.store._stop.set()


def _result(m):
    return next((a.value for a in m.avps if a.code == 268), None)
