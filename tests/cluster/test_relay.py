"""A gateway that reaches only a node not holding the state: its CCRs are
relayed over Diameter to the node that holds it (RFC 6733 section 6:
Route-Record added, hop-by-hop ids rewritten, answers routed back), and the
operator API of that node answers from the holder. The demo plans' worked
examples (tests/integration/test_demo_plans.py, every figure computed by
hand from the plans) run unchanged through node b while node a holds the
slots."""
from __future__ import annotations

import urllib.request

import pytest
import trio

from tests.integration import test_demo_plans as demo
from tests.support.cluster import OK, init, node, owner
from tests.support.gy import MB, api_call
from tests.support.rawclient import GyConnection, build_ccr

EXAMPLES = [demo.test_china_mobile_double_cap_then_reopen_then_ceiling,
            demo.test_china_telecom_double_cap_cannot_be_reopened,
            demo.test_t_mobile_unlimited_is_throttled_and_free_after_2_gb,
            demo.test_softbank_throttles_after_3_gb_unless_the_add_on_is_bought,
            demo.test_lg_u_plus_ladder,
            demo.test_directed_pack_makes_the_video_app_free_up_to_5_gb,
            demo.test_verizon_pool_sub_cap_empty_pool_and_boost,
            demo.test_framily_pool_with_charges_per_member]


@pytest.fixture(scope="module")
def cluster(pg, tmp_path_factory):
    """Node a holds every slot; node b stands by and relays."""
    d = tmp_path_factory.mktemp("relay")
    dsn = pg.database("ocs_relay")
    init(dsn)
    a = node(dsn, "a", d).start()
    b = node(dsn, "b", d).start()
    assert owner(dsn) == "a"
    yield a, b, dsn
    b.kill()
    a.kill()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda f: f.__name__.removeprefix("test_"))
async def test_demo_example_through_a_node_not_holding_the_subscriber(cluster, example):
    a, b, _ = cluster
    await example(b)


async def test_relayed_answers_come_from_the_holder_with_the_gateways_ids(cluster):
    a, b, _ = cluster
    async with trio.open_nursery() as n:
        gw = GyConnection(origin_host="pgw-relay.test.example")
        await gw.connect(b.port, n)
        req = build_ccr("pgw-relay.test.example", "relay;1", 1, 0, "8613900070001", [{"rg": 1, "rsu": MB}])
        ans = await gw.request(req)
        assert ans.result_code == OK
        assert ans.header.end_to_end_identifier == req.header.end_to_end_identifier
        assert ans.header.hop_by_hop_identifier == req.header.hop_by_hop_identifier
        assert ans.origin_host == b"a.ocs.test"             # the holder answered, through b
        # the same request again (T flag): the holder's duplicate cache answers it, nothing is charged twice
        again = await gw.request(req, retransmit=True)
        assert again.result_code == OK and again.as_bytes()[20:] == ans.as_bytes()[20:]
        n.cancel_scope.cancel()
    metrics = urllib.request.urlopen(b.api + "/metrics", timeout=10).read().decode()
    relayed = [line for line in metrics.splitlines() if line.startswith("ocs_relayed_requests_total ")]
    assert relayed and float(relayed[0].split()[1]) >= 2, relayed


async def test_the_api_of_a_node_not_holding_answers_from_the_holder(cluster):
    a, b, _ = cluster
    status, view_b = await api_call(b.api, "GET", "/v1/subscribers/8613800000009")
    status_a, view_a = await api_call(a.api, "GET", "/v1/subscribers/8613800000009")
    assert status == status_a == 200 and view_b == view_a
    status, out = await api_call(b.api, "POST", "/v1/subscribers/8613800000009/top-up", {"amount": "5"})
    assert status == 200, out
    _, after = await api_call(a.api, "GET", "/v1/subscribers/8613800000009")
    assert after["balance_micro"] == view_a["balance_micro"] + 5_000_000
