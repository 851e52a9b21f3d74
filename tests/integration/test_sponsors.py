"""Sponsored data through real Diameter (issue: sponsored data), with small
budgets so they run out mid-session. Every figure by hand from the
contracts: 1 KB = 1024 octets; `bank` pays for rating group 300 up to 0.01
yuan a month at 0.0001 yuan per started KB (100 KB), then the subscriber's
normal charging; `shop` pays for rating group 310 up to 64 KB a month, then
that traffic is refused (4012 for rating group 310 only)."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import trio

from tests.support.gy import KB, TOKEN, api_call
from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import ROOT, OcsProcess

RULES = """
[[plan]]
id = "p"
timezone = "Asia/Shanghai"
bundle = "1 MB"
overage = {{ price = "0.0003", per = "1 KB" }}

[[subscriber_range]]
first = "8613300000000"
last = "8613300000019"
plan = "p"
balance = "10.00"

[[sponsor]]
id = "bank"
timezone = "Asia/Shanghai"
budget = {{ money = "{bank_budget}" }}
price = "{bank_price}"
per = "1 KB"
rating_groups = [300]
fallback = "charge"

[[sponsor]]
id = "shop"
timezone = "Asia/Shanghai"
budget = {{ volume = "64 KB" }}
price = "0.0001"
rating_groups = [310]
fallback = "deny"
"""
SUBS = [f"86133000000{i:02d}" for i in range(20)]


def start(tmp_path, bank_price="0.0001", bank_budget="0.01"):
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "rules.toml").write_text(RULES.format(bank_price=bank_price, bank_budget=bank_budget))
    config = tmp_path / "ocs.toml"
    config.write_text("rules_poll = 0.1\n")
    return OcsProcess(tmp_path / "data", rules=rules, config=config, extra=["--api", "127.0.0.1:0"],
                      env={"OCS_API_TOKENS": TOKEN}), rules


def sponsor_report(data, sponsor: str, fmt: str = "json"):
    period = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    out = subprocess.run([sys.executable, "-m", "ocs.cli", "sponsor", "report", sponsor, "--period", period,
                          "--data", str(data), "--format", fmt], capture_output=True, text=True, cwd=ROOT, timeout=60)
    return out.returncode, out.stdout, out.stderr


async def ccr(conn, sid, rtype, number, msisdn, msccs):
    a = await conn.request(build_ccr(conn.origin_host, sid, rtype, number, msisdn, msccs))
    assert a is not None
    return a


async def test_mixed_traffic_budgets_running_out_and_a_settlement_that_reconciles(tmp_path):
    server, _ = start(tmp_path)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-sponsor.test.example")
                await conn.connect(server.port, n)
                # 20 subscribers, each 16 KB on the bank's app (rg 300) and 16 KB of other traffic (rg 1)
                for k, msisdn in enumerate(SUBS):
                    sid = f"{conn.origin_host};mixed;{k}"
                    a = await ccr(conn, sid, 1, 0, msisdn, [{"rg": 300, "rsu": 8 * KB}, {"rg": 1, "rsu": 8 * KB}])
                    assert {rg: v["granted"] for rg, v in mscc_values(a).items()} == {300: 8 * KB, 1: 8 * KB}
                    a = await ccr(conn, sid, 2, 1, None, [{"rg": 300, "rsu": 8 * KB, "used": 8 * KB},
                                                          {"rg": 1, "rsu": 8 * KB, "used": 8 * KB}])
                    assert all(v["result"] == 2001 and v["fui"] is None for v in mscc_values(a).values())
                    await ccr(conn, sid, 3, 2, None, [{"rg": 300, "used": 8 * KB}, {"rg": 1, "used": 8 * KB}])
                # the shop's 64 KB run out in the middle of a session; other traffic goes on
                sid = f"{conn.origin_host};shop"
                a = await ccr(conn, sid, 1, 0, SUBS[0], [{"rg": 310, "rsu": 50 * KB}])
                assert mscc_values(a)[310]["granted"] == 50 * KB
                a = await ccr(conn, sid, 2, 1, None, [{"rg": 310, "rsu": 50 * KB, "used": 50 * KB}])
                v = mscc_values(a)[310]
                assert (v["result"], v["granted"], v["fui"]) == (2001, 14 * KB, 0)       # the rest, then off
                a = await ccr(conn, sid, 2, 2, None, [{"rg": 310, "rsu": 50 * KB, "used": 14 * KB},
                                                      {"rg": 1, "rsu": 8 * KB}])
                v = mscc_values(a)
                assert (v[310]["result"], v[1]["result"], v[1]["granted"]) == (4012, 2001, 8 * KB)
                assert a.result_code == 2001
                await ccr(conn, sid, 3, 3, None, [{"rg": 1, "used": 8 * KB}])
                n.cancel_scope.cancel()
        views = {m: (await api_call(server.api, "GET", f"/v1/subscribers/{m}"))[1] for m in SUBS}
    finally:
        await trio.to_thread.run_sync(server.stop)

    # the bank paid for exactly 100 KB (0.01 / 0.0001); the other 220 KB of its app came from the
    # subscribers' bundles, like the 20 x 16 KB of other traffic and the 8 KB beside the shop
    bundle_used = sum(v["buckets"][0]["used_octets"] for v in views.values())
    assert bundle_used == (20 * 16 - 100) * KB + 20 * 16 * KB + 8 * KB
    assert all(Decimal(v["balance"]) == Decimal("10.00") for v in views.values())   # nothing beyond the bundles

    code, out, err = await trio.to_thread.run_sync(sponsor_report, server.data, "bank")
    assert code == 0, err
    rep = json.loads(out)
    assert (rep["sponsored_octets"], rep["amount"], rep["reconciled"]) == (100 * KB, "0.01", True)
    assert rep["account"] == {"used_octets": 100 * KB, "billed": "0.01", "billed_micro": 10_000}
    (traffic,) = rep["traffic"]
    assert (traffic["traffic"], traffic["total_octets"], traffic["sponsored_octets"],
            traffic["subscriber_paid_octets"]) == ("rating_group 300", 320 * KB, 100 * KB, 220 * KB)
    assert sum(s["octets"] for s in rep["sessions"]) == 100 * KB
    assert sum(Decimal(s["amount"]) for s in rep["sessions"]) == Decimal("0.01")
    # an unsponsored rating group is never billed to a sponsor
    records = [json.loads(line) for f in sorted((server.data / "usage").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert all(r.get("sponsor") is None for r in records if r["rating_group"] == 1)
    assert all(r.get("sponsor") == "bank" for r in records if r["rating_group"] == 300)
    # the settlement reconciles with the usage records themselves, to the fen
    bank_rows = [r for r in records if r.get("sponsor") == "bank"]
    assert sum(r["sponsor_charged_micro"] for r in bank_rows) == rep["amount_micro"] == 10_000
    assert sum(r["sponsored_octets"] for r in bank_rows) == 100 * KB

    code, out, err = await trio.to_thread.run_sync(sponsor_report, server.data, "shop")
    rep = json.loads(out)
    assert code == 0 and (rep["sponsored_octets"], rep["amount"], rep["reconciled"]) == (64 * KB, "0.0064", True)
    code, out, err = await trio.to_thread.run_sync(sponsor_report, server.data, "shop", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["record"] for r in rows] == ["session", "traffic", "total"]
    assert rows[-1]["sponsored_octets"] == str(64 * KB) and rows[-1]["amount"] == "0.0064"


async def test_a_contract_changed_under_load_bills_each_report_at_its_version(tmp_path):
    server, rules = start(tmp_path, bank_budget="1000")
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-change.test.example")
                await conn.connect(server.port, n)
                stop = trio.Event()

                async def gateway(k):
                    sid = f"{conn.origin_host};{k}"
                    await ccr(conn, sid, 1, 0, SUBS[k], [{"rg": 300, "rsu": KB}])
                    number = 1
                    while not stop.is_set():
                        a = await ccr(conn, sid, 2, number, None, [{"rg": 300, "rsu": KB, "used": 100}])
                        assert a.result_code == 2001
                        number += 1
                    await ccr(conn, sid, 3, number, None, [{"rg": 300, "used": 100}])

                async with trio.open_nursery() as load:
                    for k in range(10):
                        load.start_soon(gateway, k)
                    await trio.sleep(0.5)
                    (rules / "rules.toml").write_text(RULES.format(bank_price="0.0002", bank_budget="1000"))
                    with trio.fail_after(20):
                        while "installed" not in server.output():
                            await trio.sleep(0.05)
                    await trio.sleep(0.5)
                    stop.set()
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    records = [json.loads(line) for f in sorted((server.data / "usage").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    versions = sorted({r["rules"] for r in records})
    assert len(versions) == 2
    price = {}
    for v in versions:
        kept = (server.data / "rules" / v / "rules.toml").read_text()
        price[v] = 100 if 'price = "0.0001"\nper = "1 KB"\nrating_groups = [300]' in kept else 200
    assert sorted(price.values()) == [100, 200]
    assert {r["rules"] for r in records if r["sponsor"] == "bank"} == set(versions)
    for r in records:
        # every report is the sponsor's: one started KB per 100 octets, at its version's price
        assert r["sponsor"] == "bank" and r["sponsored_octets"] == 100 == r["octets"]
        assert r["sponsor_charged_micro"] == price[r["rules"]] and r["charged_micro"] == 0
    code, out, err = await trio.to_thread.run_sync(sponsor_report, server.data, "bank")
    assert code == 0, (out, err)
