"""Rules change under load without a restart (issue: versions and hot reload).

Fifty sessions report usage while the tariff doubles in the rule file, then
while a broken file is dropped in. Every request is answered 2001; the
broken version is refused with a log line naming the file and key, and the
last good one keeps serving; every usage record carries the version that
charged it, and its charge matches that version's price, read from the
version kept in the data directory (not from the code under test).
"""
from __future__ import annotations

import re
import tomllib
from decimal import Decimal

import numpy as np
import trio

from ocs.engine.tables import USAGE
from ocs.store.journal import replay
from ocs.store.records import JournalRecord
from tests.support.gy import KB, TOKEN, GySession, api_call
from tests.support.rawclient import GyConnection
from tests.support.server import OcsProcess

PLAN = """
[[plan]]
id = "flat"
timezone = "Asia/Shanghai"
overage = {{ price = "{price}", per = "1 KB" }}
default_grant = "10 KB"

[[subscriber_range]]
first = "8613500000000"
last = "8613500000099"
plan = "flat"
balance = "1000.00"
"""


def write_rules(path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)           # atomic, as an operator's deploy tool does


async def wait_for_log(server: OcsProcess, pattern: str, timeout: float = 20) -> re.Match:
    with trio.fail_after(timeout):
        while True:
            m = re.search(pattern, server.output())
            if m:
                return m
            await trio.sleep(0.05)


async def test_tariff_change_under_load_and_a_broken_file_refused(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rules(rules / "plans.toml", PLAN.format(price="0.0001"))
    config = tmp_path / "ocs.toml"
    config.write_text("rules_poll = 0.1\n")
    server = OcsProcess(tmp_path / "data", rules=rules, config=config, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    results: dict[int, int] = {}
    stop = trio.Event()
    reported = [0] * 50

    async def gateway(conn: GyConnection, k: int) -> None:
        s = GySession(conn, f"86135000000{k:02d}")
        g = await s.start(10 * KB)
        results[g["result"]] = results.get(g["result"], 0) + 1
        while not stop.is_set():
            used = 3 * KB + k                        # not a whole KB: rounding is exercised
            g = await s.update(used, 10 * KB)
            reported[k] += used
            results[g["result"]] = results.get(g["result"], 0) + 1
        await s.stop()

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-reload.test.example")
                await conn.connect(server.port, n)
                async with trio.open_nursery() as load:
                    for k in range(50):
                        load.start_soon(gateway, conn, k)
                    await trio.sleep(1.0)
                    first = (await api_call(server.api, "GET", "/v1/rules"))[1]["version"]
                    write_rules(rules / "plans.toml", PLAN.format(price="0.0002"))
                    m = await wait_for_log(server, r"version (\w+) installed \(was (\w+)\)")
                    second = m.group(1)
                    assert m.group(2) == first
                    await trio.sleep(1.0)
                    (rules / "broken.toml").write_text('[[plan]]\nid = "x"\nbundle = "lots"\n')
                    await wait_for_log(server, r"refused, version \w+ keeps serving")
                    await trio.sleep(0.5)
                    assert (await api_call(server.api, "GET", "/v1/rules"))[1]["version"] == second
                    stop.set()
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    log = server.output()
    assert "broken.toml: $.plan[0].bundle: 'lots' is not a volume" in log
    assert set(results) == {2001} and sum(results.values()) > 500

    # every usage row was charged at the price of the version written with it
    price = {}
    for version in (first, second):
        kept = tomllib.loads((server.data / "rules" / version / "plans.toml").read_text())
        price[version] = Decimal(kept["plan"][0]["overage"]["price"])
    assert price == {first: Decimal("0.0001"), second: Decimal("0.0002")}
    seen, charged_by = set(), {first: 0, second: 0}
    total_used = 0
    for name in ("journal.prev", "journal.old", "journal.log"):
        path = server.data / name
        if not path.exists():
            continue
        for rec in replay(path, JournalRecord):
            if rec.seq in seen or not rec.usage:
                continue
            seen.add(rec.seq)
            rows = np.frombuffer(rec.usage, USAGE)
            for used, charged in zip(rows["used"].tolist(), rows["charged"].tolist()):
                kb = -(-used // KB)
                assert Decimal(charged) / 1_000_000 == kb * price[rec.rules], rec.rules
                charged_by[rec.rules] += 1
                total_used += used
    assert charged_by[first] > 50 and charged_by[second] > 50
    assert total_used == sum(reported)


async def test_sighup_reloads_when_polling_is_off(tmp_path):
    import signal
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rules(rules / "plans.toml", PLAN.format(price="0.0001"))
    config = tmp_path / "ocs.toml"
    config.write_text("rules_poll = 0\n")
    server = OcsProcess(tmp_path / "data", rules=rules, config=config, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        first = (await api_call(server.api, "GET", "/v1/rules"))[1]["version"]
        write_rules(rules / "plans.toml", PLAN.format(price="0.0005"))
        await trio.sleep(0.5)
        assert (await api_call(server.api, "GET", "/v1/rules"))[1]["version"] == first   # not polled
        server.proc.send_signal(signal.SIGHUP)
        m = await wait_for_log(server, r"version (\w+) installed \(was (\w+)\)")
        assert m.group(2) == first
        assert (await api_call(server.api, "GET", "/v1/rules"))[1]["version"] == m.group(1)
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_values_that_overflow_are_refused_and_the_server_keeps_serving(tmp_path):
    """A money amount too large for any arithmetic ("1e999999": decimal
    Overflow), a volume past int64, and timezone names ZoneInfo refuses with
    OSError (too long for the filesystem, a directory) or ValueError (not a
    normalized path): each is a refused version with a log line naming the
    file and key, never an exception out of the reload task."""
    import signal
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rules(rules / "plans.toml", PLAN.format(price="0.0001"))
    config = tmp_path / "ocs.toml"
    config.write_text("rules_poll = 0\n")
    server = OcsProcess(tmp_path / "data", rules=rules, config=config, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        first = (await api_call(server.api, "GET", "/v1/rules"))[1]["version"]
        good = PLAN.format(price="0.0001")
        broken = [
            (good.replace('balance = "1000.00"', 'balance = "1e999999"'), "$.subscriber_range[0].balance",
             "too large an amount"),
            (good + '\n[[subscriber]]\nmsisdn = "8613600000001"\nplan = "flat"\nbalance = "1e-999999"\n',
             "$.subscriber[0].balance", "more than 6 decimal places"),
            (good.replace('default_grant = "10 KB"', 'bundle = "99999999999999999999999 GB"'), "$.plan[0].bundle",
             "too large a volume"),
            (good.replace('"Asia/Shanghai"', '"' + "a" * 300 + '"'), "$.plan[0].timezone", "unknown timezone"),
            (good.replace('"Asia/Shanghai"', '"Europe"'), "$.plan[0].timezone", "unknown timezone 'Europe'"),
            (good.replace('"Asia/Shanghai"', '"Asia/../Asia/Shanghai"'), "$.plan[0].timezone", "unknown timezone"),
        ]
        for text, key, what in broken:
            seen = server.output().count("refused, version")
            write_rules(rules / "plans.toml", text)
            server.proc.send_signal(signal.SIGHUP)
            with trio.fail_after(20):
                while server.output().count("refused, version") == seen:
                    assert server.proc.poll() is None, server.output()[-3000:]
                    await trio.sleep(0.05)
            tail = server.output().rsplit("refused, version", 1)[1]
            assert f"plans.toml: {key}: " in tail and what in tail, tail[:500]
            assert server.proc.poll() is None, server.output()[-3000:]
            assert (await api_call(server.api, "GET", "/v1/rules"))[1]["version"] == first
        # and a good version is still installed after all that
        write_rules(rules / "plans.toml", PLAN.format(price="0.0005"))
        server.proc.send_signal(signal.SIGHUP)
        m = await wait_for_log(server, r"version (\w+) installed \(was (\w+)\)")
        assert m.group(2) == first
    finally:
        await trio.to_thread.run_sync(server.stop)
