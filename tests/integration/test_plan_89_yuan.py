"""The 89-yuan plan of MISSION.md through Diameter, with the demo rules:
400 MB a month, then 0.0003 yuan per started KB, 100.00 yuan prepaid.
After 500 MB in a month, 69.28 yuan remain. The client reports only usage
within what it was granted, as a gateway does."""
from __future__ import annotations

from decimal import Decimal

import trio

from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import DEMO_RULES, OcsProcess, show_subscriber

MB = 1024 * 1024
MSISDN = "8613800000001"


async def test_500_mb_leaves_69_28_yuan(tmp_path):
    server = OcsProcess(tmp_path / "data", rules=DEMO_RULES)
    await trio.to_thread.run_sync(server.start)
    granted_total = reported = 0
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw.plan89.example")
                await conn.connect(server.port, n)
                sid = "pgw.plan89.example;1;1"
                a = await conn.request(build_ccr(conn.origin_host, sid, 1, 0, MSISDN, [{"rg": 1, "rsu": 0}]))
                assert a.result_code == 2001
                granted = mscc_values(a)[1]["granted"]
                number = 1
                while reported < 500 * MB:
                    granted_total += granted
                    used = min(granted, 500 * MB - reported)
                    reported += used
                    last = reported >= 500 * MB
                    if last:
                        a = await conn.request(build_ccr(conn.origin_host, sid, 3, number, None, [{"rg": 1, "used": used}]))
                        assert a.result_code == 2001
                    else:
                        a = await conn.request(build_ccr(conn.origin_host, sid, 2, number, None,
                                                         [{"rg": 1, "rsu": 0, "used": used}]))
                        got = mscc_values(a)[1]
                        assert got["result"] == 2001, got
                        granted = got["granted"]
                    number += 1
                n.cancel_scope.cancel()
            await conn.aclose()
        state = await trio.to_thread.run_sync(show_subscriber, server.data, MSISDN)
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert reported == 500 * MB and reported <= granted_total
    overage_kb = (500 - 400) * 1024
    expected = Decimal("100.00") - overage_kb * Decimal("0.0003")
    assert expected == Decimal("69.28")
    assert Decimal(state["balance"]) == expected
    assert state["bundle"]["used_octets"] == 400 * MB
    assert state["overage_octets"] == 100 * MB
    assert Decimal(state["charged_this_period"]) == Decimal("30.72")
    assert state["reservations"] == []
