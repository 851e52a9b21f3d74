"""Subscribers provisioned over the operator API of a real `ocs serve`, and
charged over Diameter by a gateway: created, charged, moved to another
plan, deleted; created and then the server killed with SIGKILL.

Charges by hand, from rules/demo/plans.toml:
- cn-89-3g: 400 MB a month, then 0.0003 yuan per started KB. 500 MB from
  100.00 yuan: 100 MB = 102,400 KB over, 30.72 yuan -> 69.28.
- cm-1g-capped: 1 GB, then 0.0003 yuan per started KB. Moved there with
  400 MB of "bundle" used, 700 MB more take the 624 MB left and 76 MB =
  77,824 KB over, 23.3472 yuan -> 45.9328 (on cn-89-3g they would have
  cost 215.04, more than the balance).
"""
from __future__ import annotations

from decimal import Decimal

import trio

from tests.support.gy import MB, TOKEN, GySession
from tests.support.http import acall
from tests.support.rawclient import GyConnection, build_ccr
from tests.support.server import OcsProcess

NUMBER = "8613700000001"


def _server(data) -> OcsProcess:
    return OcsProcess(data, extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})


async def _use(conn: GyConnection, msisdn: str, octets: int) -> None:
    """One session, granted `octets`, reporting them all at its end."""
    s = GySession(conn, msisdn)
    got = await s.start(rsu=octets)
    assert got["result"] == 2001 and got["granted"] == octets, got
    await s.stop(used=octets)


async def _initial(conn: GyConnection, msisdn: str) -> int:
    a = await conn.request(build_ccr(conn.origin_host, f"{conn.origin_host};probe;{msisdn}", 1, 0, msisdn,
                                     [{"rg": 1, "rsu": 0}]))
    return a.result_code


async def test_create_charge_change_plan_delete(tmp_path):
    server = _server(tmp_path / "data")
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-prov.test.example")
                await conn.connect(server.port, n)
                assert await _initial(conn, NUMBER) == 5030          # not yet

                r = await acall(server.api, "POST", "/v1/subscribers",
                                {"msisdn": NUMBER, "plan": "cn-89-3g", "balance": "100.00"})
                assert r.status == 201, r
                assert (r.json["subscriber"], r.json["plan"], r.json["balance"], r.json["provisioned"]) == \
                    (NUMBER, "cn-89-3g", "100.00", "api")
                r = await acall(server.api, "POST", "/v1/subscribers", {"msisdn": NUMBER, "plan": "cn-89-3g"})
                assert r.status == 409 and "provisioned through the API" in r.error

                await _use(conn, NUMBER, 500 * MB)
                r = await acall(server.api, "GET", f"/v1/subscribers/{NUMBER}")
                assert Decimal(r.json["balance"]) == Decimal("100.00") - 100 * 1024 * Decimal("0.0003") \
                    == Decimal("69.28")

                r = await acall(server.api, "PATCH", f"/v1/subscribers/{NUMBER}", {"plan": "cm-1g-capped"})
                assert r.status == 200, r
                assert r.json["plan"] == "cm-1g-capped" and r.json["bundle"]["remaining_octets"] == 624 * MB
                await _use(conn, NUMBER, 700 * MB)
                r = await acall(server.api, "GET", f"/v1/subscribers/{NUMBER}")
                assert Decimal(r.json["balance"]) == Decimal("69.28") - 76 * 1024 * Decimal("0.0003") \
                    == Decimal("45.9328")
                assert r.json["bundle"]["used_octets"] == 1024 * MB

                # a live session holds 10 MB from the money (the bundle is used up): a deletion waits for it
                live = GySession(conn, NUMBER)
                assert (await live.start(rsu=10 * MB))["granted"] == 10 * MB
                r = await acall(server.api, "DELETE", f"/v1/subscribers/{NUMBER}")
                assert r.status == 409 and f"1 open session(s) ({live.sid})" in r.error, r
                r = await acall(server.api, "DELETE", f"/v1/subscribers/{NUMBER}?close_sessions=true")
                assert r.status == 200, r
                # the reservation is released, not debited
                assert (r.json["balance"], r.json["closed_sessions"]) == ("45.9328", [live.sid])
                a = await conn.request(build_ccr(conn.origin_host, live.sid, 2, 1, None,
                                                 [{"rg": 1, "rsu": 0, "used": MB}]))
                assert a.result_code == 5002
                assert await _initial(conn, NUMBER) == 5030
                assert (await acall(server.api, "GET", f"/v1/subscribers/{NUMBER}")).status == 404
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_a_created_subscriber_survives_sigkill(tmp_path):
    server = _server(tmp_path / "data")
    await trio.to_thread.run_sync(server.start)
    try:
        r = await acall(server.api, "POST", "/v1/subscribers",
                        {"msisdn": NUMBER, "plan": "cn-89-3g", "balance": "100.00", "imsi": "460001234500001",
                         "timezone": "Europe/Berlin", "customer_type": "business"})
        assert r.status == 201, r
        created = r.json
    finally:
        server.kill()           # right after the answer: only the journal has it
    again = _server(tmp_path / "data")
    await trio.to_thread.run_sync(again.start)
    try:
        with trio.fail_after(60):
            r = await acall(again.api, "GET", f"/v1/subscribers/{NUMBER}")
            assert r.status == 200 and r.json == {**created, "rules_version": r.json["rules_version"]}
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-prov.test.example")
                await conn.connect(again.port, n)
                await _use(conn, NUMBER, 500 * MB)
                n.cancel_scope.cancel()
            r = await acall(again.api, "GET", f"/v1/subscribers/{NUMBER}")
            assert r.json["balance"] == "69.28" and r.json["timezone"] == "Europe/Berlin"
    finally:
        await trio.to_thread.run_sync(again.stop)
