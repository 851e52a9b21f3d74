"""Rules versions through the API: validate, upload (kept, not in force),
activate (the next CCR is charged at the new rate), roll back (the old rate
again), a refused version (the old one keeps serving), and the rules
directory as the one source of truth: an activation is written there, the
directory watch does not flip it back, a restart keeps it, and an edit of
the directory afterwards is installed as before.

Plan `flat`: no bundle, PRICE yuan per started KB; every measurement is one
fresh session of 10 KB, so it costs 10 x PRICE."""
from __future__ import annotations

import json
from decimal import Decimal

import trio

from tests.support.gy import KB, TOKEN, GySession
from tests.support.http import acall
from tests.support.rawclient import GyConnection
from tests.support.server import OcsProcess

PLAN = """
[[plan]]
id = "flat"
timezone = "Asia/Shanghai"
overage = {{ price = "{price}", per = "1 KB" }}
default_grant = "10 KB"
"""
SUBSCRIBERS = """
[[subscriber]]
msisdn = "8613100000001"
plan = "flat"
balance = "100.00"
"""
ME = "8613100000001"


def files(price: str) -> dict[str, str]:
    return {"plans.toml": PLAN.format(price=price), "subscribers.toml": SUBSCRIBERS}


async def balance(server) -> Decimal:
    r = await acall(server.api, "GET", f"/v1/subscribers/{ME}")
    assert r.status == 200, r
    return Decimal(r.json["balance"])


async def charge_10kb(server) -> Decimal:
    """What 10 KB in a fresh session costs now."""
    before = await balance(server)
    async with trio.open_nursery() as n:
        conn = GyConnection(origin_host="pgw-rules-api.test.example")
        await conn.connect(server.port, n)
        s = GySession(conn, ME)
        assert (await s.start(10 * KB))["result"] == 2001
        await s.stop(10 * KB)
        n.cancel_scope.cancel()
    return before - await balance(server)


async def active(server) -> str:
    return (await acall(server.api, "GET", "/v1/rules")).json["version"]


def directory(rules) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(rules.glob("*.toml"))}


async def test_validate_upload_activate_roll_back(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in files("0.0001").items():
        (rules / name).write_text(text)
    config = tmp_path / "ocs.toml"
    config.write_text("rules_poll = 0.1\n")
    server = OcsProcess(tmp_path / "data", rules=rules, config=config, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(90):
            v1 = await active(server)
            r = await acall(server.api, "POST", "/v1/rules/rollback")
            assert r.status == 409 and "no version before" in r.error, r
            assert await charge_10kb(server) == Decimal("0.001")

            # validate: the version it would be, nothing kept
            r = await acall(server.api, "POST", "/v1/rules/validate", {"files": files("0.0005")})
            assert r.status == 200, r
            v2 = r.json["version"]
            assert (r.json["active"], r.json["kept"], r.json["plans"], r.json["subscribers"]) == (False, False, 1, 1)
            assert v2 != v1
            # upload: kept, not in force; the same files again: already kept
            r = await acall(server.api, "POST", "/v1/rules", {"files": files("0.0005")})
            assert (r.status, r.json["version"], r.json["kept"], r.json["active"]) == (201, v2, True, False)
            assert (await acall(server.api, "POST", "/v1/rules", {"files": files("0.0005")})).status == 200
            assert (tmp_path / "data" / "rules" / v2 / "plans.toml").read_text() == files("0.0005")["plans.toml"]
            r = await acall(server.api, "GET", f"/v1/rules/versions/{v2}")
            assert r.json == {"version": v2, "active": False, "files": files("0.0005")}
            assert await active(server) == v1 and await charge_10kb(server) == Decimal("0.001")

            # activate: in force, written into the directory, charging at 0.0005
            r = await acall(server.api, "POST", f"/v1/rules/versions/{v2}/activate")
            assert (r.status, r.json) == (200, {"version": v2, "was": v1, "directory": str(rules)}), r
            assert directory(rules) == files("0.0005")
            assert await charge_10kb(server) == Decimal("0.005")
            await trio.sleep(0.6)                   # six polls of the directory: the watch agrees
            assert await active(server) == v2
            r = await acall(server.api, "GET", "/v1/rules/versions")
            assert (r.json["active"], r.json["previous"]) == (v2, v1)
            assert [(v["version"], v["active"]) for v in r.json["versions"]] == [(v1, False), (v2, True)]
            assert all(v["installed_at"] for v in r.json["versions"])

            # roll back: the previous version, its files, its rate
            r = await acall(server.api, "POST", "/v1/rules/rollback")
            assert (r.status, r.json["version"], r.json["was"]) == (200, v1, v2), r
            assert directory(rules) == files("0.0001")
            assert await charge_10kb(server) == Decimal("0.001")

            # a version that drops the plan someone is on: refused, nothing changes
            gone = {"plans.toml": PLAN.replace('"flat"', '"other"').format(price="0.0001")}
            r = await acall(server.api, "POST", "/v1/rules", {"files": gone})
            assert r.status == 201, r
            r = await acall(server.api, "POST", f"/v1/rules/versions/{r.json['version']}/activate")
            assert r.status == 409 and r.error.endswith(f"{v1} keeps serving"), r
            assert r.json["errors"] == ["plan 'flat' is removed, but 1 subscribers are on it"]
            assert await active(server) == v1 and directory(rules) == files("0.0001")

            # activate v2 again; then an edit of the directory wins as before
            assert (await acall(server.api, "POST", f"/v1/rules/versions/{v2}/activate")).status == 200
            (rules / "plans.toml").write_text(PLAN.format(price="0.0007"))
            with trio.fail_after(10):
                while await active(server) in (v1, v2):
                    await trio.sleep(0.05)
            v3 = await active(server)
            assert await charge_10kb(server) == Decimal("0.007")
            # back to v2 by API; a restart comes up with it (the directory holds it)
            assert (await acall(server.api, "POST", f"/v1/rules/versions/{v2}/activate")).status == 200
        await trio.to_thread.run_sync(server.stop)
        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(30):
            assert await active(server) == v2
            assert await charge_10kb(server) == Decimal("0.005")
    finally:
        await trio.to_thread.run_sync(server.stop)

    # every charge is traced to the version that made it, in order
    usage = [json.loads(line) for p in sorted((tmp_path / "data" / "usage").glob("*.jsonl"))
             for line in p.read_text().splitlines()]
    assert [(u["rules"], u["charged"]) for u in usage] == [
        (v1, "0.001"), (v1, "0.001"), (v2, "0.005"), (v1, "0.001"), (v3, "0.007"), (v2, "0.005")]
    history = [json.loads(line)["version"]
               for line in (tmp_path / "data" / "rules" / "installed.jsonl").read_text().splitlines()]
    assert history == [v1, v2, v1, v2, v3, v2]
