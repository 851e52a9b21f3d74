"""Every demo plan of rules/demo through real Diameter (and the operator API
for purchases, reopens and top-ups). Each expected grant and balance is
computed here by hand from the plan's own numbers (rules/demo, issue text),
never by the code under test: 1 KB = 1024 octets, 1 GB = 1024 MB.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from tests.support.gy import GB, KB, MB, TOKEN, GySession, api_call
from tests.support.rawclient import GyConnection
from tests.support.server import DEMO_RULES, OcsProcess

OK, CREDIT_LIMIT = 2001, 4012
TERMINATE, RESTRICT = 0, 2          # Final-Unit-Action


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    with OcsProcess(d / "data", rules=DEMO_RULES, extra=["--api", "127.0.0.1:0"],
                    env={"OCS_API_TOKENS": TOKEN}) as s:
        yield s


async def connect(server, nursery, name: str) -> GyConnection:
    conn = GyConnection(origin_host=f"pgw-{name}.test.example")
    await conn.connect(server.port, nursery)
    return conn


async def balance(server, msisdn: str) -> Decimal:
    status, view = await api_call(server.api, "GET", f"/v1/subscribers/{msisdn}")
    assert status == 200, view
    return Decimal(view["balance"])


def kb_price(kb: int, price: str) -> Decimal:
    return kb * Decimal(price)


async def test_china_mobile_double_cap_then_reopen_then_ceiling(server):
    """8613800000002: 1 GB bundle, 0.0003 yuan/KB, double cap 500 yuan or 15 GB
    out of bundle (fee binds first: 500 / 0.0003 = 1,666,666 whole KB), reopen
    lifts it, 50 GB total nothing lifts. Balance 1,000 yuan."""
    msisdn = "8613800000002"
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "cm"), msisdn)
            assert (await s.start(1 * GB))["granted"] == 1 * GB                  # the bundle
            g = await s.update(1 * GB, 1 * GB)                                   # bundle used; 1 GB overage affordable
            assert (g["result"], g["granted"], g["fui"]) == (OK, 1 * GB, None)
            g = await s.update(1 * GB, 1 * GB)                                   # 1,048,576 KB charged: 314.5728
            cap_kb = 1_666_666 - 1_048_576                                       # whole KB left under 500 yuan
            assert (g["result"], g["granted"], g["fui"]) == (OK, cap_kb * KB, TERMINATE)
            g = await s.update(cap_kb * KB, 1 * GB)                              # at the cap: data off
            assert (g["result"], g["fui"]) == (CREDIT_LIMIT, TERMINATE)
            spent = kb_price(1_666_666, "0.0003")
            assert spent == Decimal("499.9998")
            assert await balance(server, msisdn) == Decimal("1000") - spent
            assert (await api_call(server.api, "POST", f"/v1/subscribers/{msisdn}/reopen"))[0] == 200
            g = await s.update(0, 1 * GB)                                        # reopened: the cap is lifted
            assert (g["result"], g["granted"], g["fui"]) == (OK, 1 * GB, None)
            status, _ = await api_call(server.api, "POST", f"/v1/subscribers/{msisdn}/top-up", {"amount": "20000"})
            assert status == 200
            # run up to the 50 GB ceiling: 1 GB + 1 GB + cap_kb KB so far, plus this 1 GB grant
            used = 2 * GB + cap_kb * KB
            g = await s.update(1 * GB, 1 * GB)
            used += 1 * GB
            while g["fui"] is None:
                assert g["granted"] == 1 * GB
                g = await s.update(g["granted"], 1 * GB)
                used += 1 * GB
            # the grant that reaches 50 GB stops exactly there
            assert g["result"] == OK and g["fui"] == TERMINATE
            assert used + g["granted"] == 50 * GB
            last = g["granted"]
            g = await s.update(last, 1 * GB)
            assert (g["result"], g["fui"]) == (CREDIT_LIMIT, TERMINATE)
            await s.stop()
            n.cancel_scope.cancel()
    over_kb = (50 * GB - 1 * GB) // KB
    # every out-of-bundle KB is charged, but for the 500-yuan cap in force before the reopen:
    # the first 1,666,666 KB cost 499.9998, the rest after the reopen full price
    assert await balance(server, msisdn) == Decimal("21000") - kb_price(over_kb, "0.0003")


async def test_china_telecom_double_cap_cannot_be_reopened(server):
    """8613800000003: 1,000 yuan or 20 GB out of bundle: 3,333,333 whole KB."""
    msisdn = "8613800000003"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "ct"), msisdn)
            await s.start(1 * GB)
            g = await s.update(1 * GB, 1 * GB)
            reported_kb = 0
            while g["fui"] is None:
                g = await s.update(g["granted"], 1 * GB)
                reported_kb += 1 * GB // KB
            assert g["fui"] == TERMINATE and g["granted"] == (3_333_333 - reported_kb) * KB
            g = await s.update(g["granted"], 1 * GB)
            assert (g["result"], g["fui"]) == (CREDIT_LIMIT, TERMINATE)
            status, body = await api_call(server.api, "POST", f"/v1/subscribers/{msisdn}/reopen")
            assert status == 409 and "reopen" in body["error"]
            g = await s.update(0, 1 * GB)
            assert g["result"] == CREDIT_LIMIT
            await s.stop()
            n.cancel_scope.cancel()
    assert await balance(server, msisdn) == Decimal("2000") - kb_price(3_333_333, "0.0003")


async def test_t_mobile_unlimited_is_throttled_and_free_after_2_gb(server):
    msisdn = "8613800000004"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "tmo"), msisdn)
            assert (await s.start(512 * MB))["granted"] == 512 * MB
            assert (await s.update(512 * MB, 1 * GB))["granted"] == 1 * GB
            g = await s.update(1 * GB, 1 * GB)               # the last 512 MB of the bundle, then throttled
            assert (g["result"], g["granted"], g["fui"], g["filters"]) == (OK, 512 * MB, RESTRICT, ["throttle-2g"])
            for _ in range(3):                                # unlimited, throttled, free
                g = await s.update(g["granted"], 1 * GB)
                assert (g["result"], g["granted"], g["fui"], g["filters"]) == (OK, 1 * GB, RESTRICT, ["throttle-2g"])
            await s.stop(g["granted"])
            n.cancel_scope.cancel()
    status, view = await api_call(server.api, "GET", f"/v1/subscribers/{msisdn}")
    assert Decimal(view["balance"]) == 0 and view["billing"] == "postpaid"
    assert view["total_octets_this_period"] == 2 * GB + 3 * GB


async def test_softbank_throttles_after_3_gb_unless_the_add_on_is_bought(server):
    msisdn = "8613800000005"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "sb"), msisdn)
            await s.start(1 * GB)
            await s.update(1 * GB, 1 * GB)
            g = await s.update(1 * GB, 1 * GB)
            assert (g["granted"], g["fui"]) == (1 * GB, None)             # the last GB of 3, exactly
            g = await s.update(1 * GB, 100 * MB)                           # then 128 kbps
            assert (g["result"], g["granted"], g["fui"], g["filters"]) == (OK, 100 * MB, RESTRICT, ["throttle-128k"])
            status, bought = await api_call(server.api, "POST", f"/v1/subscribers/{msisdn}/packs",
                                            {"pack": "softbank-2g-addon"})
            assert status == 201 and bought["price"] == "2625" and bought["balance"] == "7375"
            g = await s.update(100 * MB, 700 * MB)                         # full speed again, from the pack
            assert (g["result"], g["granted"], g["fui"]) == (OK, 700 * MB, None)
            g = await s.update(700 * MB, 1 * GB)
            assert (g["granted"], g["fui"]) == (1 * GB, None)
            g = await s.update(1 * GB, 1 * GB)                             # 324 MB of the pack left
            assert (g["granted"], g["fui"], g["filters"]) == (324 * MB, RESTRICT, ["throttle-128k"])
            await s.stop(324 * MB)
            n.cancel_scope.cancel()
    assert await balance(server, msisdn) == Decimal("7375")


async def test_lg_u_plus_ladder(server):
    """1 GB bundle; out of bundle 12.8 won per started MB below 1.9 GB, a flat
    25,000 won from 1.9 GB to 6 GB, then 25,000 + 12.8 per started MB."""
    msisdn = "8613800000006"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "lgu"), msisdn)
            await s.start(1 * GB)
            g = await s.update(1 * GB, 1000 * MB)
            assert g["granted"] == 1000 * MB
            await s.update(1000 * MB, 1000 * MB)                           # 1000 MB out of bundle
            assert await balance(server, msisdn) == Decimal("200000") - 1000 * Decimal("12.8")
            await s.update(1000 * MB, 1 * GB)                              # 2000 MB >= 1.9 GB: flat 25,000
            assert await balance(server, msisdn) == Decimal("175000")
            for _ in range(4):                                             # 6096 MB out of bundle: still 25,000
                await s.update(1 * GB, 1 * GB)
            assert await balance(server, msisdn) == Decimal("175000")
            await s.stop(48 * MB + 1)                                      # one octet beyond 6 GB: one MB more
            n.cancel_scope.cancel()
    assert await balance(server, msisdn) == Decimal("175000") - Decimal("12.8")


async def test_no_cap_charges_until_the_money_is_gone(server):
    """50 yuan at 0.0003 yuan/KB after the 1 GB bundle: 166,666 whole KB."""
    msisdn = "8613800000007"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "att"), msisdn)
            await s.start(1 * GB)
            g = await s.update(1 * GB, 1 * GB)
            assert (g["result"], g["granted"], g["fui"]) == (OK, 166_666 * KB, TERMINATE)
            g = await s.update(166_666 * KB, 1 * GB)
            assert (g["result"], g["fui"]) == (CREDIT_LIMIT, TERMINATE)
            await s.stop()
            n.cancel_scope.cancel()
    assert await balance(server, msisdn) == Decimal("50") - kb_price(166_666, "0.0003")


async def test_directed_pack_makes_the_video_app_free_up_to_5_gb(server):
    msisdn = "8613800000009"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "video"), msisdn, rg=200)
            await s.start(1 * GB)
            for _ in range(4):
                await s.update(1 * GB, 1 * GB)
            g = await s.update(1 * GB, 500 * MB)                       # 5 GB of video: free; then normal data
            assert g["granted"] == 500 * MB
            await s.update(500 * MB, None)                             # 400 MB bundle + 100 MB at 0.0003/KB
            other = GySession(s.conn, msisdn, rg=1)
            g = await other.start(10 * MB)                             # other traffic: the bundle is gone
            await other.stop(10 * MB)
            await s.stop(0)
            n.cancel_scope.cancel()
    status, view = await api_call(server.api, "GET", f"/v1/subscribers/{msisdn}")
    buckets = {b["name"]: b["used_octets"] for b in view["buckets"]}
    assert buckets == {"bundle": 400 * MB, "video": 5 * GB}
    assert Decimal(view["balance"]) == Decimal("100") - kb_price(100 * 1024 + 10 * 1024, "0.0003")


async def test_verizon_pool_sub_cap_empty_pool_and_boost(server):
    """10 GB for 4 lines; 8613800000014 may take 2 GB; empty pool: 4012 for
    everyone until the owner buys the 1 GB boost ($15, postpaid)."""
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            conn = await connect(server, n, "vz")
            kid = GySession(conn, "8613800000014")
            assert (await kid.start(700 * MB))["granted"] == 700 * MB
            assert (await kid.update(700 * MB, 1 * GB))["granted"] == 1 * GB
            g = await kid.update(1 * GB, 1 * GB)                          # up to the 2 GB sub-cap, exactly
            assert (g["result"], g["granted"], g["fui"]) == (OK, 324 * MB, TERMINATE)
            g = await kid.update(324 * MB, 1 * GB)
            assert (g["result"], g["fui"]) == (CREDIT_LIMIT, TERMINATE)
            a = GySession(conn, "8613800000011")
            b = GySession(conn, "8613800000012")
            assert (await a.start(1 * GB))["granted"] == 1 * GB
            g = await b.start(8 * GB)                                    # max_grant is 1 GB
            for _ in range(6):
                g = await b.update(g["granted"], 1 * GB)
            assert g["granted"] == 1 * GB                                # 2 + 1 + 7 = 10 GB held or used
            c = GySession(conn, "8613800000013")
            g = await c.start(1 * GB)
            assert (g["result"], g["fui"]) == (CREDIT_LIMIT, TERMINATE)  # the pool is empty for everyone
            status, bought = await api_call(server.api, "POST", "/v1/subscribers/8613800000011/packs",
                                            {"pack": "vz-data-boost-1g"})
            assert status == 201 and bought["holder"] == "8613800000011"
            c2 = GySession(conn, "8613800000013")
            assert (await c2.start(2 * GB))["granted"] == 1 * GB         # the boost, shared
            g = await kid.update(0, 1 * GB)
            assert g["result"] == CREDIT_LIMIT                           # the sub-cap still holds
            for sess, used in ((a, 1 * GB), (b, 1 * GB), (c2, 1 * GB), (kid, 0)):
                await sess.stop(used)
            n.cancel_scope.cancel()
    status, owner = await api_call(server.api, "GET", "/v1/subscribers/8613800000011")
    assert Decimal(owner["balance"]) == Decimal("-15.00")               # postpaid: the boost is owed
    assert owner["buckets"][0]["used_octets"] == 10 * GB
    status, kid_view = await api_call(server.api, "GET", "/v1/subscribers/8613800000014")
    assert kid_view["pool_used_octets"] == 2 * GB and kid_view["pool_owner"] == "8613800000011"


async def test_framily_pool_with_charges_per_member(server):
    """6 GB pool; each member pays its own overage at $0.015 per started MB."""
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            conn = await connect(server, n, "framily")
            a, b, c = (GySession(conn, m) for m in ("8613800000021", "8613800000022", "8613800000023"))
            await a.start(1 * GB)
            for _ in range(3):
                await a.update(1 * GB, 1 * GB)
            await a.stop(1 * GB)                                         # 4 GB
            await b.start(1 * GB)
            await b.update(1 * GB, 1 * GB)
            g = await b.update(1 * GB, 100 * MB)                          # the pool is used up: 100 MB charged
            assert g["granted"] == 100 * MB
            await b.stop(100 * MB)
            await c.start(10 * MB)
            await c.stop(10 * MB)
            n.cancel_scope.cancel()
    views = {m: (await api_call(server.api, "GET", f"/v1/subscribers/{m}"))[1]
             for m in ("8613800000021", "8613800000022", "8613800000023")}
    assert [Decimal(v["balance"]) for v in views.values()] == [0, -100 * Decimal("0.015"), -10 * Decimal("0.015")]
    assert views["8613800000021"]["buckets"][0]["used_octets"] == 6 * GB       # the pool, on the owner's row
    assert [views[m]["pool_used_octets"] for m in ("8613800000022", "8613800000023")] == [2 * GB, 0]


async def test_thresholds_are_announced_once(server):
    """The 89-yuan plan announces 80% and 100% of its 400 MB bundle."""
    msisdn = "8613800000001"
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            s = GySession(await connect(server, n, "thr"), msisdn)
            await s.start(300 * MB)
            await s.update(300 * MB, 50 * MB)        # 75%: nothing
            await s.update(50 * MB, 50 * MB)         # 87.5%: bundle-80
            await s.update(50 * MB, 50 * MB)         # 100%: bundle-100
            await s.stop(50 * MB)
            n.cancel_scope.cancel()
    await trio.sleep(0.2)
    lines = [l for l in (server.data / "notifications.jsonl").read_text().splitlines() if msisdn in l]
    import json
    names = [json.loads(l)["threshold"] for l in lines if json.loads(l)["kind"] == "bucket"]
    assert names == ["bundle-80", "bundle-100"]
    first = json.loads(lines[0])
    assert first["octets"] == 350 * MB and first["plan"] == "cn-89-3g" and first["kind"] == "bucket"
