"""Usage per rating group per local day, and the sponsors' accounts and
settlement, over the API after real CCRs; every figure by hand from the
rules below. 1 KB = 1024 octets.

Plan `p`: 1 MB bundle, then 0.0003 yuan per started KB of each report,
Asia/Shanghai. Contract `bank` pays for rating group 300 up to 0.01 yuan a
month at 0.0001 yuan per started KB (100 KB), then the subscriber pays.

The server's clock is set with faketime, restarting on the same data:
run A at 2026-11-20 12:00 UTC (20:00 on the 20th in Shanghai), run B at
2026-11-21 17:00 UTC (01:00 on the 22nd in Shanghai): run B's records are
in the UTC day file of the 21st, but on the subscriber's 22nd.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import trio

from tests.support.gy import KB, TOKEN, GySession
from tests.support.http import acall
from tests.support.rawclient import GyConnection
from tests.support.server import ROOT, OcsProcess

RULES = """
[[plan]]
id = "p"
timezone = "Asia/Shanghai"
bundle = "1 MB"
overage = { price = "0.0003", per = "1 KB" }

[[subscriber]]
msisdn = "8613200000001"
plan = "p"
balance = "10.00"

[[subscriber]]
msisdn = "8613200000002"
plan = "p"
balance = "10.00"

[[sponsor]]
id = "bank"
name = "A bank"
timezone = "Asia/Shanghai"
budget = { money = "0.01" }
price = "0.0001"
per = "1 KB"
rating_groups = [300]
fallback = "charge"
"""
ME, OTHER = "8613200000001", "8613200000002"


async def run_at(tmp_path, utc: str, steps, after=None):
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "rules.toml").write_text(RULES)
    server = OcsProcess(tmp_path / "data", rules=rules, fake_time=utc, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-usage.test.example")
                await conn.connect(server.port, n)
                await steps(conn)
                n.cancel_scope.cancel()
            return await after(server) if after else None
    finally:
        await trio.to_thread.run_sync(server.stop)


async def use(conn, msisdn: str, rg: int, *reports: int) -> None:
    """One session: a grant of the total, then each report (the last one in
    the CCR-T)."""
    s = GySession(conn, msisdn, rg)
    g = await s.start(sum(reports))
    assert g["result"] == 2001, g
    for used in reports[:-1]:
        assert (await s.update(used, 0))["result"] == 2001
    await s.stop(reports[-1])


async def usage(server, first: str, last: str, who: str = ME) -> dict:
    r = await acall(server.api, "GET", f"/v1/subscribers/{who}/usage?from={first}&to={last}")
    assert r.status == 200, r
    return r.json


def rg(rating_group, octets, from_buckets, sponsored, charged, reports):
    micro = int(round(float(charged) * 1_000_000))
    return {"rating_group": rating_group, "octets": octets, "seconds": 0, "from_buckets": from_buckets,
            "sponsored_octets": sponsored, "charged": charged, "charged_micro": micro, "currency": "CNY",
            "reports": reports}


async def test_usage_per_app_per_local_day_and_the_sponsor_settlement(tmp_path):
    async def run_a(conn):
        await use(conn, ME, 1, 600 * KB)                 # from the bundle
        await use(conn, ME, 300, 60 * KB)                # the bank pays: 60 KB, 0.006 yuan
        await use(conn, OTHER, 1, 10 * KB)               # someone else's

    await run_at(tmp_path, "2026-11-20 12:00:00", run_a)

    async def run_b(conn):
        # 424 KB are left of the bundle: 176 KB at 0.0003 = 0.0528; then
        # 1,500 octets are 2 started KB = 0.0006
        await use(conn, ME, 1, 600 * KB, 1500)
        # the bank has 0.004 yuan left: 40 KB; the other 20 KB the subscriber
        # pays, the bundle being spent: 20 x 0.0003 = 0.006
        await use(conn, ME, 300, 60 * KB)

    async def check(server):
        on_20th = {"day": "2026-11-20", "rating_groups": [rg(1, 600 * KB, 600 * KB, 0, "0.00", 1),
                                                          rg(300, 60 * KB, 0, 60 * KB, "0.00", 1)]}
        on_22nd = {"day": "2026-11-22", "rating_groups": [rg(1, 600 * KB + 1500, 424 * KB, 0, "0.0534", 2),
                                                          rg(300, 60 * KB, 0, 40 * KB, "0.006", 1)]}
        whole = await usage(server, "2026-11-20", "2026-11-22")
        assert whole == {"subscriber": ME, "timezone": "Asia/Shanghai", "from": "2026-11-20", "to": "2026-11-22",
                         "days": [on_20th, on_22nd]}
        # the UTC file of the 21st holds the 22nd in Shanghai: nothing on the 21st
        assert (await usage(server, "2026-11-21", "2026-11-21"))["days"] == []
        assert (await usage(server, "2026-11-22", "2026-11-22"))["days"] == [on_22nd]
        other = await usage(server, "2026-11-01", "2026-11-30", OTHER)
        assert other["days"] == [{"day": "2026-11-20", "rating_groups": [rg(1, 10 * KB, 10 * KB, 0, "0.00", 1)]}]
        # the balance agrees: 10 - 0.0534 - 0.006
        assert (await acall(server.api, "GET", f"/v1/subscribers/{ME}")).json["balance"] == "9.9406"

        # the bank paid 60 + 40 KB = 102,400 octets, 0.01 yuan: its budget is spent
        r = await acall(server.api, "GET", "/v1/sponsors")
        assert r.status == 200, r
        (bank,) = r.json["sponsors"]
        assert {k: bank[k] for k in ("sponsor", "used_octets", "billed", "billed_micro", "held_octets",
                                     "remaining_octets", "remaining_money", "next_period", "budget")} == {
            "sponsor": "bank", "used_octets": 100 * KB, "billed": "0.01", "billed_micro": 10_000, "held_octets": 0,
            "remaining_octets": 0, "remaining_money": "0.00", "next_period": "2026-12-01",
            "budget": {"money": "0.01", "volume_octets": None}}

        r = await acall(server.api, "GET", "/v1/sponsors/bank/report?period=2026-11")
        assert r.status == 200 and r.headers["Content-Type"] == "application/json", r
        rep = r.json
        assert (rep["sponsored_octets"], rep["amount"], rep["reconciled"]) == (100 * KB, "0.01", True)
        assert rep["account"] == {"used_octets": 100 * KB, "billed": "0.01", "billed_micro": 10_000}
        (traffic,) = rep["traffic"]
        assert (traffic["traffic"], traffic["total_octets"], traffic["sponsored_octets"],
                traffic["subscriber_paid_octets"], traffic["subscriber_charged"]) == (
            "rating_group 300", 120 * KB, 100 * KB, 20 * KB, "0.006")
        assert sorted((s["subscriber"], s["octets"], s["amount"]) for s in rep["sessions"]) == [
            (ME, 40 * KB, "0.004"), (ME, 60 * KB, "0.006")]
        # the same settlement as CSV, asked for either way
        for path, headers in (("/v1/sponsors/bank/report?period=2026-11&format=csv", {}),
                              ("/v1/sponsors/bank/report?period=2026-11", {"Accept": "text/csv"})):
            r = await acall(server.api, "GET", path, headers=headers)
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv"), r
            rows = list(csv.DictReader(io.StringIO(r.body.decode())))
            total = [row for row in rows if row["record"] == "total"]
            assert [(t["sponsored_octets"], t["amount"]) for t in total] == [(str(100 * KB), "0.01")]
        # a month without traffic: an empty, reconciled settlement
        r = await acall(server.api, "GET", "/v1/sponsors/bank/report?period=2026-10")
        assert (r.json["sponsored_octets"], r.json["sessions"], r.json["reconciled"]) == (0, [], True)
        return whole

    whole = await run_at(tmp_path, "2026-11-21 17:00:00", run_b, check)

    # the CLI twin reads the same records, the server stopped
    out = subprocess.run([sys.executable, "-m", "ocs.cli", "usage", ME, "--from", "2026-11-20", "--to", "2026-11-22",
                          "--data", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == whole
    bad = subprocess.run([sys.executable, "-m", "ocs.cli", "usage", ME, "--from", "2026-11-22", "--to", "2026-11-20",
                          "--data", str(tmp_path / "data")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and "from <= to" in bad.stderr
