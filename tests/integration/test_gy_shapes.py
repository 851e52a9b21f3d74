"""CCR shapes real gateways send, through a real server: top-level units with
no MSCC (Open5GS's SMF), an MSCC without Rating-Group, identification by
IMSI, time units, events (direct debiting, balance check), and DPR to every
peer on SIGTERM."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import OcsProcess, show_subscriber

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
KB, MB = 1024, 1024 * 1024
I, U, T, E = 1, 2, 3, 4


@pytest.fixture
async def server(tmp_path):
    ocs = OcsProcess(tmp_path / "data", rules=RULES)
    await trio.to_thread.run_sync(ocs.start)
    try:
        yield ocs
    finally:
        await trio.to_thread.run_sync(ocs.stop)
        ocs.kill()


async def converse(server, host, requests):
    """Send requests one after another; the answers."""
    answers = []
    async with trio.open_nursery() as n:
        conn = GyConnection(origin_host=host)
        await conn.connect(server.port, n)
        for req in requests:
            answers.append(await conn.request(req(conn.origin_host) if callable(req) else req))
        n.cancel_scope.cancel()
    await conn.aclose()
    return answers


def top_granted(answer) -> int | None:
    gsu = answer.granted_service_unit
    return None if gsu is None else gsu.cc_total_octets


async def test_top_level_units_without_mscc(server):
    h = "smf.open5gs.example"
    sid = f"{h};1"
    with trio.fail_after(30):
        a_i, a_u, a_t = await converse(server, h, [
            build_ccr(h, sid, I, 0, "8613900000007", [], top={"rsu": 0}),
            build_ccr(h, sid, U, 1, None, [], top={"rsu": 2 * MB, "used": 5 * MB}),
            build_ccr(h, sid, T, 2, None, [], top={"used": 1 * MB}),
        ])
    assert a_i.result_code == 2001 and top_granted(a_i) == 10 * MB   # the plan's default grant
    assert a_i.multiple_services_credit_control in (None, [])
    assert a_u.result_code == 2001 and top_granted(a_u) == 2 * MB
    assert a_t.result_code == 2001 and top_granted(a_t) is None
    state = await trio.to_thread.run_sync(show_subscriber, server.data, "8613900000007", RULES)
    assert state["bundle"]["used_octets"] == 6 * MB and state["reservations"] == []


async def test_mscc_without_rating_group_and_time_units(server):
    h = "pgw.norg.example"
    sid = f"{h};1"
    with trio.fail_after(30):
        a_i, a_u, a_t = await converse(server, h, [
            build_ccr(h, sid, I, 0, "8613900000008", [{"rsu": 3 * MB}]),
            build_ccr(h, sid, U, 1, None, [{"rsu": 0, "used": 2 * MB, "used_time": 60}]),
            build_ccr(h, sid, T, 2, None, [{"used": 1 * MB, "used_time": 30}]),
        ])
    for a in (a_i, a_u):
        [m] = a.multiple_services_credit_control
        assert m.rating_group is None and m.result_code == 2001
    assert a_i.multiple_services_credit_control[0].granted_service_unit.cc_total_octets == 3 * MB
    assert a_t.result_code == 2001
    state = await trio.to_thread.run_sync(show_subscriber, server.data, "8613900000008", RULES)
    assert state["bundle"]["used_octets"] == 3 * MB and state["used_time_seconds"] == 90


async def test_identified_by_imsi(server):
    h = "pgw.imsi.example"
    with trio.fail_after(30):
        [a] = await converse(server, h, [build_ccr(h, f"{h};1", I, 0, None, [{"rg": 1, "rsu": 0}],
                                                   imsi="460001234567890")])
    assert a.result_code == 2001
    state = await trio.to_thread.run_sync(show_subscriber, server.data, "8613800000001", RULES)
    assert len(state["reservations"]) == 1 and state["bundle"]["reserved_octets"] == 10 * MB


async def test_events_direct_debiting_and_balance_check(server):
    """Plan `tiny`: 0.10 yuan at 0.01 per started KB (RFC 4006 section 6)."""
    h = "pgw.event.example"
    msisdn = "8613700000001"
    with trio.fail_after(30):
        debit, too_much, check, = await converse(server, h, [
            build_ccr(h, f"{h};1", E, 0, msisdn, [{"rg": 10, "rsu": 3 * KB}], action=0),
            build_ccr(h, f"{h};2", E, 0, msisdn, [{"rg": 10, "rsu": 8 * KB}], action=0),
            build_ccr(h, f"{h};3", E, 0, msisdn, [{"rg": 10, "rsu": 0}], action=2),
        ])
    assert mscc_values(debit)[10] == {"result": 2001, "granted": 3 * KB, "validity": None, "fui": None, "filters": []}
    assert mscc_values(too_much)[10]["result"] == 4012       # all or nothing: 7 KB is left
    assert check.result_code == 2001
    assert any(a.code == 422 and int.from_bytes(a.payload, "big") == 0 for a in check.avps)  # ENOUGH_CREDIT
    state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
    assert Decimal(state["balance"]) == Decimal("0.07") and state["reservations"] == []


async def test_sigterm_sends_dpr_to_every_peer_and_exits_zero(server):
    got_dpr = []

    async def peer(host):
        async with trio.open_nursery() as n:
            conn = GyConnection(origin_host=host)
            await conn.connect(server.port, n)
            a = await conn.request(build_ccr(host, f"{host};1", I, 0, "8613900000009", [{"rg": 1, "rsu": 0}]))
            assert a.result_code == 2001
            await conn.closed.wait()
            got_dpr.append(conn.dpr_seen)
            n.cancel_scope.cancel()

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            for k in range(3):
                n.start_soon(peer, f"pgw{k}.term.example")
            await trio.sleep(1)
            code = await trio.to_thread.run_sync(server.stop)
    assert code == 0
    assert got_dpr == [True, True, True]


async def test_refund_and_price_enquiry(server):
    """RFC 4006 6.4/6.5 with plan `tiny` (0.01 yuan per started KB, 0.10 yuan):
    a price enquiry debits nothing and answers Cost-Information; a refund
    from a peer the configuration does not allow refunds is refused (5003)
    and gives nothing (tests/gy/test_refunds.py: refunds of a debit)."""
    h = "pgw.price.example"
    msisdn = "8613700000001"
    with trio.fail_after(30):
        enquiry, refund = await converse(server, h, [
            build_ccr(h, f"{h};1", E, 0, msisdn, [{"rg": 10, "rsu": 3 * KB + 1}], action=3),
            build_ccr(h, f"{h};2", E, 0, msisdn, [{"rg": 10, "rsu": 2 * KB}], action=1),
        ])
    assert enquiry.result_code == 2001 and refund.result_code == 5003
    cost = enquiry.cost_information
    assert cost.unit_value.value_digits == 40_000 and cost.unit_value.exponent == -6   # 4 started KB = 0.04
    assert cost.currency_code == 156
    state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
    assert Decimal(state["balance"]) == Decimal("0.10")


async def test_proxy_info_is_echoed(server):
    """RFC 6733 6.7.3: a relay's Proxy-Info comes back in the answer, in order,
    also on a refusal."""
    from diameter.message.avp.grouped import ProxyInfo
    h = "pgw.relayed.example"
    infos = [ProxyInfo(proxy_host=b"dra1.example", proxy_state=b"\x01\x02\x03"),
             ProxyInfo(proxy_host=b"dra2.example", proxy_state=b"state-2")]
    ok = build_ccr(h, f"{h};1", I, 0, "8613900000011", [{"rg": 1, "rsu": 0}])
    unknown = build_ccr(h, f"{h};2", I, 0, "8613799999999", [{"rg": 1, "rsu": 0}])
    for req in (ok, unknown):
        req.proxy_info = list(infos)
    with trio.fail_after(30):
        a_ok, a_unknown = await converse(server, h, [ok, unknown])
    assert a_ok.result_code == 2001 and a_unknown.result_code == 5030
    for a in (a_ok, a_unknown):
        got = [(p.proxy_host, p.proxy_state) for p in a.proxy_info]
        assert got == [(b"dra1.example", b"\x01\x02\x03"), (b"dra2.example", b"state-2")]
