"""Rates by context (issue: policy by APN, RAT type, roaming, customer type)
through real Diameter: the CCR's Service-Information/PS-Information carries
Called-Station-Id, 3GPP-RAT-Type and 3GPP-SGSN-MCC-MNC (TS 32.299), the
subscriber's customer type comes from provisioning. Charges by hand."""
from __future__ import annotations

from decimal import Decimal

import trio

from tests.support.gy import KB, TOKEN, api_call
from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import OcsProcess

RULES = """
[[plan]]
id = "ctx"
timezone = "Asia/Shanghai"
overage = { price = "0.01", per = "1 KB" }
home_networks = ["46000", "46002"]
rate = [
  { roaming = true, deny = true },                                       # no data abroad
  { apn = ["cmwap"], price = "0.02", per = "1 KB" },                      # the WAP gateway costs more
  { customer_type = ["business"], rat = ["eutran", "nr"], free = true },  # business on 4G/5G: free
]

[[subscriber]]
msisdn = "8613400000001"
plan = "ctx"
balance = "10"
customer_type = "consumer"

[[subscriber]]
msisdn = "8613400000002"
plan = "ctx"
balance = "10"
customer_type = "business"
"""
EUTRAN, GERAN = 6, 2


async def test_rates_by_apn_rat_roaming_and_customer_type(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ctx.toml").write_text(RULES)
    server = OcsProcess(tmp_path / "data", rules=rules, extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    cases = [  # (msisdn, APN, RAT, serving network, expected result, expected charge for 1 KB)
        ("8613400000001", "cmnet.mnc000.mcc460.gprs", EUTRAN, "46000", 2001, "0.01"),
        ("8613400000001", "CMWAP", EUTRAN, "46002", 2001, "0.02"),
        ("8613400000001", "cmnet", EUTRAN, "310260", 4010, "0"),
        ("8613400000002", "cmnet", EUTRAN, "46000", 2001, "0"),
        ("8613400000002", "cmnet", GERAN, "46000", 2001, "0.01"),
        ("8613400000002", "cmwap", EUTRAN, "46000", 2001, "0.02"),     # the first rate that matches
    ]
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-ctx.test.example")
                await conn.connect(server.port, n)
                for k, (msisdn, apn, rat, plmn, result, price) in enumerate(cases):
                    before = Decimal((await api_call(server.api, "GET", f"/v1/subscribers/{msisdn}"))[1]["balance"])
                    sid = f"{conn.origin_host};{k}"
                    ctx = dict(apn=apn, rat=rat, plmn=plmn)
                    a = await conn.request(build_ccr(conn.origin_host, sid, 1, 0, msisdn, [{"rg": 1, "rsu": KB}], **ctx))
                    assert mscc_values(a)[1]["result"] == result, (k, mscc_values(a))
                    if result == 2001:
                        a = await conn.request(build_ccr(conn.origin_host, sid, 3, 1, None, [{"rg": 1, "used": KB}], **ctx))
                        assert a.result_code == 2001
                    after = Decimal((await api_call(server.api, "GET", f"/v1/subscribers/{msisdn}"))[1]["balance"])
                    assert before - after == Decimal(price), k
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
