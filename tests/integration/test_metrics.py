"""/metrics on the API address: no token needed, Prometheus text format,
the request counts by command, request type and result code as sent."""
from __future__ import annotations

import re
import urllib.error
import urllib.request

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gy import TOKEN, api_call
from tests.support.rawclient import GyConnection, build_ccr
from tests.support.server import OcsProcess


def scrape(base: str) -> dict:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_what_was_answered(tmp_path):
    server = OcsProcess(tmp_path / "data", extra=["--api", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-metrics.test.example")
                await conn.connect(server.port, n)
                for k in range(5):
                    a = await conn.request(build_ccr(conn.origin_host, f"m;{k}", 1, 0, f"86139000000{k:02d}",
                                                     [{"rg": 1, "rsu": 0}]))
                    assert a.result_code == 2001
                for k in range(3):
                    a = await conn.request(build_ccr(conn.origin_host, f"u;{k}", 1, 0, "8613999999999",
                                                     [{"rg": 1, "rsu": 0}]))
                    assert a.result_code == 5030
                a = await conn.request(build_ccr(conn.origin_host, "m;0", 2, 1, None, [{"rg": 1, "rsu": 0, "used": 10}]))
                assert a.result_code == 2001
                m = await trio.to_thread.run_sync(scrape, server.api)
                metrics_only = re.search(r"metrics listening on (http://[0-9.]+:\d+)", server.output()).group(1)
                alone = await trio.to_thread.run_sync(scrape, metrics_only)
                n.cancel_scope.cancel()
        assert (await api_call(server.api, "GET", "/v1/rules", token=None))[0] == 401    # the rest still needs one
    finally:
        await trio.to_thread.run_sync(server.stop)
    req = lambda t, code: m[("ocs_requests_total", (("command", "CCR"), ("request_type", t), ("result_code", code)))]
    assert (req("INITIAL", "2001"), req("INITIAL", "5030"), req("UPDATE", "2001")) == (5, 3, 1)
    assert m[("ocs_open_sessions", ())] == 5
    assert m[("ocs_reservations", ())] == 5
    assert m[("ocs_peers", (("state", "OPEN"),))] == 1
    assert m[("ocs_batch_size_count", ())] >= 1 and m[("ocs_journal_write_seconds_count", ())] >= 1
    # every CCR answered is one latency observation; the +Inf bucket holds them all
    assert m[("ocs_request_duration_seconds_count", (("command", "CCR"),))] == 9
    assert m[("ocs_request_duration_seconds_bucket", (("command", "CCR"), ("le", "+Inf")))] == 9
    assert m[("ocs_grants_total", (("rating_group", "1"),))] == 6     # five CCR-I and the CCR-U
    assert not any(k[0] == "ocs_denials_total" for k in m)          # 5030 is the request's, not a unit's
    assert m[("process_resident_memory_bytes", ())] > 0
    # the metrics-only address serves the same families, without a token
    assert alone[("ocs_grants_total", (("rating_group", "1"),))] == 6
    assert {k[0] for k in alone} == {k[0] for k in m}


def test_metrics_only_address_serves_nothing_else(tmp_path):
    server = OcsProcess(tmp_path / "data", extra=["--metrics", "127.0.0.1:0"])
    server.start()
    try:
        base = re.search(r"metrics listening on (http://[0-9.]+:\d+)", server.output()).group(1)
        for path, code in (("/v1/rules", 404), ("/", 404)):
            try:
                urllib.request.urlopen(base + path, timeout=10)
                raise AssertionError(f"{path} answered")
            except urllib.error.HTTPError as e:
                assert e.code == code
        req = urllib.request.Request(base + "/metrics", data=b"x", method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("POST /metrics answered")
        except urllib.error.HTTPError as e:
            assert e.code == 405 and e.headers["Allow"] == "GET, HEAD"
    finally:
        server.stop()
