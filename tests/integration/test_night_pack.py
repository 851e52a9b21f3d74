"""8613800000008: the 89-yuan plan plus a 2 GB night pack, 23:00-07:00 Asia/Shanghai,
used first at night. The server's clock is set with faketime (Debian
`faketime`), restarting on the same data at later times of the night; usage
is rated as of the grant it was reported against, and a grant's
Validity-Time ends at the band's edge so the gateway reports there.
"""
from __future__ import annotations

import trio

from tests.support.gy import MB, TOKEN, GySession, api_call
from tests.support.rawclient import GyConnection
from tests.support.server import DEMO_RULES, OcsProcess

MSISDN = "8613800000008"


async def run_at(data, utc: str, steps):
    server = OcsProcess(data, rules=DEMO_RULES, fake_time=utc, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-night.test.example")
                await conn.connect(server.port, n)
                out = await steps(conn)
                n.cancel_scope.cancel()
        status, view = await api_call(server.api, "GET", f"/v1/subscribers/{MSISDN}")
        assert status == 200
        return out, view
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_night_bucket_by_time_of_day(tmp_path):
    data = tmp_path / "data"
    session: dict = {}

    async def at_2250(conn):                       # 22:50 in Shanghai: day rates, the bundle
        s = GySession(conn, MSISDN)
        session["s"] = s
        return await s.start(100 * MB)

    g, view = await run_at(data, "2026-11-10 14:50:00", at_2250)
    # ends at 23:00, the band's edge (the fake clock has run a few seconds since 22:50)
    assert g["granted"] == 100 * MB and 580 <= g["validity"] <= 600
    assert {b["name"]: b["reserved_octets"] for b in view["buckets"]} == {"bundle": 100 * MB, "night": 0}

    async def at_2330(conn):                       # 23:30: report the day grant, get night quota
        s = session["s"]
        s.conn = conn
        return await s.update(100 * MB, 100 * MB)

    g, view = await run_at(data, "2026-11-10 15:30:00", at_2330)
    assert g["granted"] == 100 * MB and g["validity"] == 1800
    used = {b["name"]: (b["used_octets"], b["reserved_octets"]) for b in view["buckets"]}
    assert used == {"bundle": (100 * MB, 0), "night": (0, 100 * MB)}

    async def at_0010(conn):                       # 00:10: still night
        s = session["s"]
        s.conn = conn
        await s.stop(100 * MB)
        fresh = GySession(conn, MSISDN)
        g = await fresh.start(10 * MB)
        await fresh.stop(10 * MB)
        return g

    g, view = await run_at(data, "2026-11-10 16:10:00", at_0010)
    assert g["granted"] == 10 * MB and g["validity"] == 1800

    async def at_0655(conn):                       # 06:55: night quota until 07:00 only
        s = GySession(conn, MSISDN)
        g = await s.start(10 * MB)
        await s.stop(10 * MB)
        return g

    g, view = await run_at(data, "2026-11-10 22:55:00", at_0655)
    assert g["granted"] == 10 * MB and 280 <= g["validity"] <= 300
    used = {b["name"]: b["used_octets"] for b in view["buckets"]}
    assert used == {"bundle": 100 * MB, "night": 120 * MB}
    assert view["balance"] == "100.00" and view["reservations"] == []
