"""Whole runs over real TCP: load shapes against the echo server, and the
verdict on servers that get one thing wrong."""
import pytest
import trio

from loadtest.reference import echo
from loadtest.run import run

from . import faulty_server
from .conftest import quick


async def run_against(server, *args, scenario="steady", **overrides):
    """Start `server` on port 0 in this trio run, load it, stop it."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server, *args)
        with trio.fail_after(20):
            report = await run(quick(scenario, port, **overrides))
        nursery.cancel_scope.cancel()
    return report


async def test_open_loop_offers_the_scheduled_rate():
    r = await run_against(echo.serve, "127.0.0.1", 0, gateways__count=2, load__rate=4000,
                          judge__relaxed=True)
    assert r.passed, r.summary()
    assert 3400 < r.offered_per_s < 4600 and 3400 < r.answered_per_s < 4600
    # Answers after the warm-up include those to requests still in flight then.
    assert r.counts["sent"] <= r.counts["answered"] <= r.counts["sent"] + 50
    assert r.connections == {"gateways": 2, "storms": 0, "connects": 2, "connect_failures": 0,
                             "drops": 0, "server_disconnects": 0, "dwr_answered": 0,
                             "unexpected": 0}
    lat, wire = r.latency_ms, r.wire_latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert wire["p50"] <= lat["p50"]  # due-time latency includes the generator's lag
    assert sum(count for _, count in r.histogram) == r.counts["answered"]
    assert {row["phase"] for row in r.series} >= {"measure", "drain"}


async def test_closed_loop_keeps_the_window_full():
    r = await run_against(echo.serve, "127.0.0.1", 0, scenario="closed", load__window=16,
                          load__warmup=0.2, load__duration=0.8, judge__relaxed=True)
    assert r.passed, r.summary()
    assert r.answered_per_s > 1000
    assert max(row["outstanding"] for row in r.series) <= 16


async def test_a_request_count_ends_the_run():
    r = await run_against(echo.serve, "127.0.0.1", 0, scenario="closed", load__duration=0,
                          load__requests=3001, gateways__count=2, judge__relaxed=True)
    assert r.passed and r.counts["sent"] == 3001
    assert 3001 <= r.counts["answered"] <= 3001 + 2 * 64  # + those in flight at the start


async def test_ramp_and_burst_follow_the_rate_function():
    # 0-1.5 s: ramp 500 -> 3500/s; bursts of 8000/s in [0.6, 0.8) and [1.1, 1.3).
    r = await run_against(echo.serve, "127.0.0.1", 0, load__warmup=0, load__duration=1.5,
                          load__ramp_from=500, load__rate=3500, load__ramp_seconds=1.5,
                          load__burst_rate=8000, load__burst_every=0.5,
                          load__burst_seconds=0.2, load__burst_at=0.6, judge__relaxed=True)
    expected = (500 + 3500) / 2 * 1.5 + 0.4 * 8000 - (0.2 * 2000 + 0.2 * 3000)
    assert r.passed
    assert abs(r.counts["sent"] - expected) < 0.03 * expected


async def test_reconnect_storms_resend_what_was_in_flight():
    r = await run_against(echo.serve, "127.0.0.1", 0, gateways__count=4, load__rate=4000,
                          load__duration=1.5, reconnect__every=0.4, reconnect__at=0.3,
                          reconnect__delay=0.05, judge__relaxed=True)
    assert r.passed, r.summary()
    assert r.connections["storms"] >= 3 and r.connections["drops"] >= 6
    assert r.connections["connects"] == 4 + r.connections["drops"]
    assert r.counts["answered"] >= r.counts["sent"]


async def test_a_correct_server_passes_with_several_rating_groups_and_a_plan():
    r = await run_against(faulty_server.serve, "none", load__rate=3000,
                          subscribers__plan_octets="10 GB")
    assert r.passed, r.summary()
    assert r.counts["sessions_completed"] > 0 and r.result_codes == {"2001": r.counts["answered"]}
    assert 0 < r.counts["octets_reported"] <= r.counts["octets_granted"]


@pytest.mark.parametrize("fault,counter", [
    ("session-id", "fail_session_id"),
    ("request-number", "fail_request_number"),
    ("result-code", "fail_result_code"),
    ("over-grant", "fail_over_request"),
    ("missing-mscc", "fail_mscc"),
])
async def test_a_wrong_answer_fails_the_run(fault, counter):
    r = await run_against(faulty_server.serve, fault, load__rate=1000,
                          sessions__profile=[{"rating_groups": [2, 3]}])
    assert not r.passed and r.errors > 0
    assert r.counts[counter] > 0 and r.counts["check_failed"] >= r.counts[counter]
    assert "FAIL" in r.summary()


async def test_grants_beyond_the_plan_fail_the_run():
    # 1 MB grants, every one used up; three subscribers may hold + use 3 MB each.
    r = await run_against(faulty_server.serve, "none", 1 << 20, load__rate=500,
                          subscribers__last="8613900000002", subscribers__plan_octets="3 MB",
                          sessions__profile=[{"updates": 10, "use_percent": [100, 100]}],
                          gateways__count=1)
    assert not r.passed and r.counts["fail_over_plan"] > 0


async def test_a_silent_server_times_out():
    r = await run_against(faulty_server.serve, "silent", load__rate=500, load__timeout=0.3)
    assert not r.passed
    assert r.counts["answered"] == 0 and r.counts["timeouts"] >= r.counts["sent"] > 0


async def test_a_server_dwr_is_answered_and_its_dpr_counts_against_it():
    r = await run_against(faulty_server.serve, "dwr", load__rate=500)
    assert r.passed and r.connections["dwr_answered"] == 4
    r = await run_against(faulty_server.serve, "dpr", load__rate=2000, reconnect__delay=0.05)
    assert not r.passed and r.connections["server_disconnects"] >= 1
    assert any("DPR" in note for note in r.notes)


def test_gateways_do_not_run_their_ids_in_step():
    """RFC 6733 section 3: ids start at random values. Gateways counting in step
    made the python-diameter Node, which keys requests by hop-by-hop and
    end-to-end id across connections, send answers to the wrong gateway."""
    from loadtest import codec
    from loadtest.run import Clock, make_gateways
    from loadtest.sessions import Counters

    ids = []
    for g in make_gateways(quick("closed", 1, gateways__count=3, load__window=4),
                           Counters(), Clock()):
        raw = g.gen.out[:g.gen.emit(0, 1 << 62)].tobytes()
        frames, _ = codec.split_frames(raw)
        ids.append({(codec.parse_answer(raw[a:b]).hop_by_hop,
                     codec.parse_answer(raw[a:b]).end_to_end) for a, b in frames})
    assert all(len(s) == 4 for s in ids)
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    hbh = [{h for h, _ in s} for s in ids]
    e2e = [{e for _, e in s} for s in ids]
    assert not (hbh[0] & hbh[1]) and not (e2e[0] & e2e[1])
