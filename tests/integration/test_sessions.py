"""Duplicate detection (RFC 6733 section 6.2 / RFC 4006 section 5.7) and
session supervision (Tcc, RFC 4006 section 13) through a real server."""
from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import trio
from diameter.message import Message

from tests.support.rawclient import GyConnection, build_ccr, mscc_values
from tests.support.server import OcsProcess, show_subscriber

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
KB = 1024


async def _session(server, host, body):
    """Connect as `host`, run `body(conn)`, disconnect; body's result."""
    result = None
    async with trio.open_nursery() as n:
        conn = GyConnection(origin_host=host)
        await conn.connect(server.port, n)
        try:
            result = await body(conn)
        finally:
            n.cancel_scope.cancel()
    await conn.aclose()
    return result


def _strip_hbh(answer: Message) -> bytes:
    raw = bytearray(answer.as_bytes())
    raw[12:16] = b"\0\0\0\0"
    return bytes(raw)


async def test_retransmission_answered_once_also_across_restart(tmp_path):
    server = OcsProcess(tmp_path / "data", rules=RULES)
    await trio.to_thread.run_sync(server.start)
    msisdn = "8613800000001"     # cn-89-3g: 400 MB bundle
    try:
        with trio.fail_after(90):
            async def first(conn):
                sid = "pgw.dup.example;1"
                a = await conn.request(build_ccr(conn.origin_host, sid, 1, 0, msisdn, [{"rg": 1, "rsu": 0}]))
                assert a.result_code == 2001
                update = build_ccr(conn.origin_host, sid, 2, 1, None, [{"rg": 1, "rsu": 0, "used": 3 * KB}])
                again = copy.deepcopy(update)
                original = await conn.request(update)
                duplicate = await conn.request(again, retransmit=True)
                assert _strip_hbh(duplicate) == _strip_hbh(original)
                assert duplicate.header.hop_by_hop_identifier == again.header.hop_by_hop_identifier
                return update, original
            update, original = await _session(server, "pgw.dup.example", first)
            state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
            assert state["bundle"]["used_octets"] == 3 * KB

            await trio.to_thread.run_sync(server.stop)
            await trio.to_thread.run_sync(server.start)

            async def after_restart(conn):
                again = copy.deepcopy(update)
                return await conn.request(again, retransmit=True)
            duplicate = await _session(server, "pgw.dup.example", after_restart)
            assert _strip_hbh(duplicate) == _strip_hbh(original)
            state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
            assert state["bundle"]["used_octets"] == 3 * KB    # charged once
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_silent_session_released_after_tcc(tmp_path):
    """Plan `tiny` has Validity-Time 2 s, so Tcc is 4 s: the reservation is
    released; the gateway's late report is still debited (RFC 4006 7, within
    `session_grace`): 1 KB at 0.01 yuan a started KB."""
    server = OcsProcess(tmp_path / "data", rules=RULES)
    await trio.to_thread.run_sync(server.start)
    msisdn = "8613700000001"
    sid = "pgw.tcc.example;1"
    try:
        with trio.fail_after(60):
            async def open_session(conn):
                a = await conn.request(build_ccr(conn.origin_host, sid, 1, 0, msisdn, [{"rg": 10, "rsu": 4 * KB}]))
                assert (mscc_values(a)[10]["result"], mscc_values(a)[10]["granted"]) == (2001, 4 * KB)
                assert a.multiple_services_credit_control[0].validity_time == 2
            await _session(server, "pgw.tcc.example", open_session)
            state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
            assert Decimal(state["reserved_money"]) == Decimal("0.04") and len(state["reservations"]) == 1
            await trio.sleep(6)
            state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
            assert state["reservations"] == [] and Decimal(state["reserved_money"]) == 0
            assert Decimal(state["balance"]) == Decimal("0.10")

            async def late_update(conn):
                return await conn.request(build_ccr(conn.origin_host, sid, 2, 1, None, [{"rg": 10, "used": KB}]))
            a = await _session(server, "pgw.tcc.example", late_update)
            assert a.result_code == 2001
            state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
            assert Decimal(state["balance"]) == Decimal("0.09")
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_retransmission_after_the_cache_forgot_it_is_not_charged_again(tmp_path):
    """With a duplicate cache of one answer, a retransmitted CCR-I or CCR-U
    is found by its session's CC-Request-Number (RFC 4006 5.7): no second
    reservation or debit, and the answer carries what the session holds."""
    cfg = tmp_path / "ocs.toml"
    cfg.write_text("dedup_entries = 1\n")
    server = OcsProcess(tmp_path / "data", rules=RULES, config=cfg)
    await trio.to_thread.run_sync(server.start)
    msisdn = "8613800000001"
    try:
        with trio.fail_after(60):
            async def body(conn):
                sid = "pgw.forget.example;1"
                initial = build_ccr(conn.origin_host, sid, 1, 0, msisdn, [{"rg": 1, "rsu": 0}])
                initial_again = copy.deepcopy(initial)
                first = await conn.request(initial)
                # push the CCA-I out of the cache, then retransmit the CCR-I
                await conn.request(build_ccr(conn.origin_host, "pgw.forget.example;0", 1, 0, "8613900000002",
                                             [{"rg": 1, "rsu": 0}]))
                first_again = await conn.request(initial_again, retransmit=True)
                assert first_again.result_code == 2001
                assert mscc_values(first_again) == mscc_values(first)
                update = build_ccr(conn.origin_host, sid, 2, 1, None, [{"rg": 1, "rsu": 0, "used": 5 * KB}])
                again = copy.deepcopy(update)
                original = await conn.request(update)
                # another session's request pushes the answer out of the cache
                await conn.request(build_ccr(conn.origin_host, "pgw.forget.example;2", 1, 0, "8613900000001",
                                             [{"rg": 1, "rsu": 0}]))
                repeat = await conn.request(again, retransmit=True)
                return original, repeat
            original, repeat = await _session(server, "pgw.forget.example", body)
        assert repeat.result_code == 2001
        assert mscc_values(repeat) == mscc_values(original)
        assert (mscc_values(original)[1]["result"], mscc_values(original)[1]["granted"]) == (2001, 10 * 1024 * KB)
        state = await trio.to_thread.run_sync(show_subscriber, server.data, msisdn, RULES)
        assert state["bundle"]["used_octets"] == 5 * KB
        assert state["bundle"]["reserved_octets"] == 10 * 1024 * KB     # one reservation, not two
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_a_small_outstanding_limit_still_answers_everything(tmp_path):
    """max_outstanding = 8: a peer pipelining 600 requests is not read while
    8 of its requests are in flight (TCP pushes back), and nothing is lost
    or stuck: every request is answered."""
    cfg = tmp_path / "ocs.toml"
    cfg.write_text("max_outstanding = 8\n")
    server = OcsProcess(tmp_path / "data", rules=RULES, config=cfg)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async def body(conn):
                async def one(k):
                    a = await conn.request(build_ccr(conn.origin_host, f"pgw.bp.example;{k}", 1, 0,
                                                     f"8613900000{k % 1000:03d}", [{"rg": 1, "rsu": 0}]))
                    return a.result_code
                results = []

                async def record(k):
                    results.append(await one(k))
                async with trio.open_nursery() as n:
                    for k in range(600):
                        n.start_soon(record, k)
                return results
            results = await _session(server, "pgw.bp.example", body)
        assert results == [2001] * 600
    finally:
        await trio.to_thread.run_sync(server.stop)
