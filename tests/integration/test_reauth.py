"""Re-Auth-Request (RFC 4006 5.5, TS 32.299 6.4.6): a change that affects a
live session makes the OCS ask the gateway holding it to re-authorize.

The gateway here is the test client on python-diameter's messages; it
answers each RAR with a RAA and then, like a PGW, sends a CCR-UPDATE.
"""
from __future__ import annotations

import math
from decimal import Decimal

import trio

from tests.integration.test_hot_reload import write_rules
from tests.integration.test_metrics import scrape
from tests.support.gy import TOKEN, api_call
from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import OcsProcess

KB, MB = 1024, 1024 * 1024
PLANS = """
[[plan]]
id = "payg"
timezone = "Asia/Shanghai"
overage = {{ price = "{payg}", per = "1 KB", rounding = "per-started-unit" }}
default_grant = "1 MB"

[[plan]]
id = "other"
timezone = "Asia/Shanghai"
overage = {{ price = "0.0001", per = "1 KB", rounding = "per-started-unit" }}
default_grant = "1 MB"

[[subscriber]]
msisdn = "8613700000001"
plan = "payg"
balance = "1.00"

[[subscriber]]
msisdn = "8613700000002"
plan = "other"
balance = "100.00"

[[subscriber]]
msisdn = "8613700000003"
plan = "payg"
balance = "100.00"
"""
RG = 10


def start(tmp_path, config: str = "") -> OcsProcess:
    rules = tmp_path / "rules"
    rules.mkdir()
    write_rules(rules / "plans.toml", PLANS.format(payg="0.0003"))
    (tmp_path / "ocs.toml").write_text(config)
    return OcsProcess(tmp_path / "data", rules=rules, config=tmp_path / "ocs.toml",
                      extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})


class Session:
    def __init__(self, conn: GyConnection, sid: str, msisdn: str, origin_host: str | None = None):
        self.conn, self.sid, self.msisdn, self.number = conn, sid, msisdn, 0
        self.origin_host = origin_host or conn.origin_host      # another host: conn is a relay

    async def send(self, rtype: int, used: int | None = None, rsu: int | None = 0) -> dict:
        m = {"rg": RG, "rsu": rsu}
        if used is not None:
            m["used"] = used
        a = await self.conn.request(build_ccr(self.origin_host, self.sid, rtype, self.number,
                                              self.msisdn if rtype == 1 else None, [m]))
        self.number += 1
        got = mscc_values(a).get(RG, {})
        got["top"] = a.result_code
        return got


def cost(used_octets: int, price: str) -> Decimal:
    return math.ceil(used_octets / KB) * Decimal(price)


async def next_rar(conn: GyConnection, timeout: float = 15):
    with trio.fail_after(timeout):
        return await conn.rars.receive()


async def test_top_up_restores_a_session_on_its_final_units_through_reauth(tmp_path):
    """1.00 yuan at 0.0003 a started KB buys 3333 KB: three 1 MB grants, then
    the last 261 KB as final units (FUI TERMINATE). A top-up while the
    gateway holds them makes the OCS re-authorize the session, and the
    gateway's CCR-U gets an ordinary 1 MB grant again."""
    server = start(tmp_path)
    await trio.to_thread.run_sync(server.start)
    spent = Decimal(0)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw.reauth.example")
                await conn.connect(server.port, n)
                s = Session(conn, "pgw.reauth.example;topup;1", "8613700000001")
                got = await s.send(1)
                assert got["result"] == 2001, got
                grants = [got["granted"]]
                while got.get("fui") is None:     # use every grant until the final one
                    assert len(grants) < 10 and got["result"] == 2001, got
                    spent += cost(got["granted"], "0.0003")
                    got = await s.send(2, used=got["granted"])
                    grants.append(got["granted"])
                assert got["result"] == 2001 and got["fui"] == 0, got       # final units, then TERMINATE
                assert grants == [MB, MB, MB, (3333 - 3 * 1024) * KB]
                status, body = await api_call(server.api, "POST", "/v1/subscribers/8613700000001/top-up",
                                              {"amount": "10.00"})
                assert status == 200, body
                rar = await next_rar(conn)
                assert rar.session_id == s.sid and rar.re_auth_request_type == 0
                assert rar.destination_host == b"pgw.reauth.example" and rar.auth_application_id == 4
                got = await s.send(2, used=0)       # the gateway re-authorizes at once
                assert got["result"] == 2001 and got["granted"] == 1 * MB and got.get("fui") is None, got
                m = await trio.to_thread.run_sync(scrape, server.api)
                status, state = await api_call(server.api, "GET", "/v1/subscribers/8613700000001")
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert Decimal(state["balance"]) == Decimal("1.00") + Decimal("10.00") - spent
    assert m[("ocs_reauth_requests_total", (("result", "2001"),))] == 1
    assert m[("ocs_grants_total", (("rating_group", "10"),))] == len(grants) + 1


async def test_a_session_refused_more_credit_ends_and_gets_no_reauth(tmp_path):
    """RFC 4006 7: a CCR-U answered 4012 at the top level moves the session
    to Idle; its usage is debited, a top-up sends it no RAR, and the
    gateway's next session for the subscriber is granted again."""
    server = start(tmp_path)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw.reauth.example")
                await conn.connect(server.port, n)
                s = Session(conn, "pgw.reauth.example;cut;1", "8613700000001")
                got = await s.send(1)
                while got["result"] == 2001:
                    got = await s.send(2, used=got["granted"])
                assert got["result"] == 4012 and got["top"] == 4012, got
                status, state = await api_call(server.api, "GET", "/v1/subscribers/8613700000001")
                assert Decimal(state["balance"]) == Decimal("1.00") - cost(3333 * KB, "0.0003")
                status, body = await api_call(server.api, "POST", "/v1/subscribers/8613700000001/top-up",
                                              {"amount": "10.00"})
                assert status == 200, body
                with trio.move_on_after(3):
                    rar = await conn.rars.receive()
                    raise AssertionError(f"a RAR for an ended session: {rar.session_id}")
                again = Session(conn, "pgw.reauth.example;cut;2", "8613700000001")
                got = await again.send(1)
                assert got["result"] == 2001 and got["granted"] == MB, got
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_rule_change_reauthorizes_only_sessions_it_changes(tmp_path):
    server = start(tmp_path, "rules_poll = 0.1\n")
    plans = tmp_path / "rules" / "plans.toml"
    write_rules(plans, PLANS.format(payg="0.0003") + RANGE)
    await trio.to_thread.run_sync(server.start)

    async def no_more(conn):
        await trio.sleep(1.5)
        try:
            extra = conn.rars.receive_nowait()
        except trio.WouldBlock:
            return
        raise AssertionError(f"a RAR for a session the change did not touch: {extra.session_id}")

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw.rules.example")
                await conn.connect(server.port, n)
                on_payg = Session(conn, "pgw.rules.example;payg", "8613700000003")
                on_other = Session(conn, "pgw.rules.example;other", "8613700000002")
                in_range = Session(conn, "pgw.rules.example;range", "8613600000001")
                for s in (on_payg, on_other, in_range):
                    assert (await s.send(1))["result"] == 2001
                # the payg tariff changes: its subscribers' sessions, the range's among them
                write_rules(plans, PLANS.format(payg="0.0004") + RANGE)
                got = {(await next_rar(conn)).session_id for _ in range(2)}
                assert got == {on_payg.sid, in_range.sid}
                assert (await on_payg.send(2, used=1 * MB))["result"] == 2001
                await no_more(conn)
                # the range moves to the other plan, no plan changes: the range's session only
                write_rules(plans, PLANS.format(payg="0.0004") + RANGE.replace('"payg"', '"other"'))
                assert (await next_rar(conn)).session_id == in_range.sid
                await no_more(conn)
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_unknown_session_answer_releases_and_silence_times_out(tmp_path):
    server = start(tmp_path, "reauth_timeout = 1\n")
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                lost = GyConnection(origin_host="pgw.lost.example")
                lost.raa_result = 5002          # "I have no such session"
                silent = GyConnection(origin_host="pgw.silent.example")
                silent.raa_result = None        # never answers
                await lost.connect(server.port, n)
                await silent.connect(server.port, n)
                gone = Session(lost, "pgw.lost.example;1", "8613700000003")
                kept = Session(silent, "pgw.silent.example;1", "8613700000002")
                assert (await gone.send(1))["granted"] == 1 * MB
                assert (await kept.send(1))["granted"] == 1 * MB

                assert (await api_call(server.api, "POST", "/v1/subscribers/8613700000003/top-up",
                                       {"amount": "1.00"}))[0] == 200
                assert (await next_rar(lost)).session_id == gone.sid
                while True:         # released: nothing held any more
                    _, state = await api_call(server.api, "GET", "/v1/subscribers/8613700000003")
                    if not state["reservations"]:
                        break
                    await trio.sleep(0.05)
                assert (await gone.send(2, used=0))["top"] == 5002     # DIAMETER_UNKNOWN_SESSION_ID

                assert (await api_call(server.api, "POST", "/v1/subscribers/8613700000002/top-up",
                                       {"amount": "1.00"}))[0] == 200
                assert (await next_rar(silent)).session_id == kept.sid
                while True:
                    m = await trio.to_thread.run_sync(scrape, server.api)
                    if m.get(("ocs_reauth_requests_total", (("result", "timeout"),))):
                        break
                    await trio.sleep(0.2)
                _, state = await api_call(server.api, "GET", "/v1/subscribers/8613700000002")
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert m[("ocs_reauth_requests_total", (("result", "timeout"),))] == 1
    assert m[("ocs_reauth_requests_total", (("result", "5002"),))] == 1
    assert len(state["reservations"]) == 1     # a silent gateway keeps its session (Tcc decides)


async def test_a_session_behind_a_relay_is_reauthorized_through_the_relay(tmp_path):
    """The CCRs' Origin-Host is a gateway we have no connection to; they came
    through a relay (a DRA). The RAR goes back through that connection, with
    the gateway as Destination-Host (RFC 6733 6.1)."""
    server = start(tmp_path)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                dra = GyConnection(origin_host="dra.relay.example")
                await dra.connect(server.port, n)
                behind = Session(dra, "pgw.behind.example;1", "8613700000003", origin_host="pgw.behind.example")
                assert (await behind.send(1))["result"] == 2001
                assert (await api_call(server.api, "POST", "/v1/subscribers/8613700000003/top-up",
                                       {"amount": "1.00"}))[0] == 200
                rar = await next_rar(dra)
                assert rar.session_id == behind.sid and rar.destination_host == b"pgw.behind.example"
                assert (await behind.send(2, used=0))["result"] == 2001
                m = await trio.to_thread.run_sync(scrape, server.api)
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert m[("ocs_reauth_requests_total", (("result", "2001"),))] == 1
    assert ("ocs_reauth_requests_total", (("result", "no_peer"),)) not in m


async def test_a_storm_of_reauthorizations_is_paced_and_all_sent(tmp_path):
    """A rules change touching many live sessions, and a gateway slow to
    answer (here: silent): never more than the per-peer limit of RARs
    outstanding, the rest sent as earlier ones time out, every session
    reached, and CCRs answered meanwhile."""
    from ocs.net.reauth import MAX_RARS_PER_PEER
    sessions = 3 * MAX_RARS_PER_PEER
    server = start(tmp_path, "rules_poll = 0.1\nreauth_timeout = 1\n")
    rules = tmp_path / "rules" / "plans.toml"
    rules.write_text(PLANS.format(payg="0.0003") + RANGE)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(120):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw.storm.example")
                await conn.connect(server.port, n)
                opened = [Session(conn, f"pgw.storm.example;{k}", f"86136{k:08d}") for k in range(sessions)]

                async def open_all(chunk):
                    for s in chunk:
                        assert (await s.send(1))["result"] == 2001
                async with trio.open_nursery() as m:
                    for k in range(16):
                        m.start_soon(open_all, opened[k::16])
                conn.raa_result = None
                write_rules(rules, PLANS.format(payg="0.0005") + RANGE)
                seen = [(await next_rar(conn)).session_id]
                with trio.move_on_after(0.5):      # well before the first RARs time out
                    while True:
                        seen.append((await next_rar(conn)).session_id)
                assert len(seen) == MAX_RARS_PER_PEER
                assert (await opened[0].send(2, used=0))["result"] == 2001     # answered mid-storm
                while len(seen) < sessions:
                    seen.append((await next_rar(conn)).session_id)
                n.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert sorted(seen) == sorted(s.sid for s in opened)      # each once


RANGE = """
[[subscriber_range]]
first = "8613600000000"
last = "8613600009999"
plan = "payg"
balance = "100.00"
"""
