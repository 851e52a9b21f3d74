"""The compiled PGW session model, driven without sockets.

Requests come out of Generator.step as bytes, are decoded by python-diameter,
and answers built by python-diameter go back in, so these tests also check
the generator's encoder and decoder against the library end to end.
"""
import numpy as np
import pytest
from diameter.message import Message
from diameter.message.avp.grouped import GrantedServiceUnit, MultipleServicesCreditControl

from loadtest import ccr, codec, schedule
from loadtest.sessions import Counters, Generator

FIRST = 8613900000000
FOREVER = 1 << 62
MS = 1_000_000


def make(slots=1, updates=2, use=(50, 50), rating_groups=(10,), per_session=(1, 1),
         relaxed=False, request_octets=0, plan_octets=0, timeout_ns=10 * MS, **kw):
    templates = ccr.CcrTemplates("pgw1.lt", "lt", "ocs.example", 13, boot=1,
                                 max_rating_groups=per_session[1],
                                 request_octets=request_octets)
    counters = Counters()
    gen = Generator(slots, templates, counters, FIRST, 3,
                    [(1, updates, updates, use[0], use[1], per_session[0], per_session[1])],
                    list(rating_groups), relaxed=relaxed, expected_results=(2001, 4012),
                    request_octets=request_octets, plan_octets=plan_octets,
                    timeout_ns=timeout_ns, **kw)
    return gen, counters


def requests(gen, now=0, until=FOREVER):
    """Whatever the generator sends now, decoded."""
    _, _, n = gen.step(np.zeros(0, np.uint8), 0, now, until)
    raw = gen.out[:n].tobytes()
    frames, used = codec.split_frames(raw)
    assert used == len(raw)
    return [Message.from_bytes(raw[a:b]) for a, b in frames]


def feed(gen, raw: bytes, now=1000):
    rx = np.frombuffer(raw, np.uint8).copy()
    consumed, n_other, _ = gen.step(rx, len(rx), now, 0)  # answers only: send nothing
    return consumed, n_other


def cca(req, result=2001, octets=1000, mscc_result=2001, session_id=None, reqno=None,
        rating_groups=None):
    ans = req.to_answer()
    ans.session_id = session_id or req.session_id
    ans.origin_host, ans.origin_realm = b"ocs.example", b"ocs.example"
    ans.auth_application_id = 4
    ans.result_code = result
    ans.cc_request_type = req.cc_request_type
    ans.cc_request_number = req.cc_request_number if reqno is None else reqno
    if req.cc_request_type != codec.TERMINATE:
        rgs = rating_groups or [m.rating_group for m in req.multiple_services_credit_control]
        grants = octets if isinstance(octets, dict) else dict.fromkeys(rgs, octets)
        ans.multiple_services_credit_control = [MultipleServicesCreditControl(
            rating_group=rg, result_code=mscc_result,
            granted_service_unit=None if grants[rg] is None
            else GrantedServiceUnit(cc_total_octets=grants[rg])) for rg in rgs]
    return ans.as_bytes()


def used_octets(req):
    return [[u.cc_total_octets for u in m.used_service_unit]
            for m in req.multiple_services_credit_control]


def test_a_session_runs_initial_updates_terminate_then_the_next_subscriber():
    gen, counters = make(updates=2, use=(50, 50))
    seen, grants = [], [1000, 3000, 501]
    for step in range(5):
        [req] = requests(gen, now=step * 10_000)
        seen.append(req)
        feed(gen, cca(req, octets=grants[step] if step < 3 else None),
             now=step * 10_000 + 2_500)
    kinds = [(r.cc_request_type, r.cc_request_number) for r in seen]
    assert kinds == [(1, 0), (2, 1), (2, 2), (3, 3), (1, 0)]
    assert [used_octets(r) for r in seen[1:4]] == [[[500]], [[1500]], [[250]]]
    assert len({r.session_id for r in seen[:4]}) == 1
    assert seen[4].session_id != seen[0].session_id
    msisdns = [r.subscription_id[0].subscription_id_data for r in (seen[0], seen[4])]
    assert msisdns == [str(FIRST), str(FIRST + 1)]
    assert counters.stat("answered") == 5 and counters.stat("check_failed") == 0
    assert counters.stat("sessions_completed") == 1
    assert (counters.stat("sent_initial"), counters.stat("sent_update"),
            counters.stat("sent_terminate")) == (2, 2, 1)
    assert counters.stat("octets_granted") == 4501
    assert counters.stat("octets_reported") == 2250
    hist = counters.latency
    assert hist.sum() == 5 and counters.stat("max_latency_ns") == 2500


def test_usage_is_drawn_within_the_profile_and_never_above_the_grant():
    gen, _ = make(slots=64, updates=1000, use=(10, 100))
    reported = []
    for step in range(20):
        reqs = requests(gen, now=step)
        reported += [u[0][0] for u in map(used_octets, reqs) if u[0]]
        feed(gen, b"".join(cca(r, octets=10_000) for r in reqs), now=step)
    assert len(reported) == 64 * 19
    assert min(reported) >= 1000 and max(reported) <= 10_000
    assert len(set(reported)) > 50  # drawn, not one value


def test_several_rating_groups_one_mscc_each():
    gen, counters = make(slots=16, rating_groups=(10, 20, 30), per_session=(2, 3))
    reqs = requests(gen)
    counts = {len(r.multiple_services_credit_control) for r in reqs}
    assert counts == {2, 3}
    for r in reqs:
        rgs = [m.rating_group for m in r.multiple_services_credit_control]
        assert len(set(rgs)) == len(rgs) and set(rgs) <= {10, 20, 30}
    feed(gen, b"".join(cca(r, octets=4000) for r in reqs))
    assert counters.stat("check_failed") == 0
    for r in requests(gen):
        assert r.cc_request_type == codec.UPDATE
        assert all(u == [[2000]] or u == [2000] for u in used_octets(r))


def test_the_retransmission_after_a_reconnect_carries_the_t_bit_and_same_ids():
    gen, counters = make()
    [req] = requests(gen, now=0)
    assert gen.requeue() == 1 and gen.outstanding == 0
    [again] = requests(gen, now=5000)
    assert again.header.is_retransmit and not req.header.is_retransmit
    assert again.header.end_to_end_identifier == req.header.end_to_end_identifier
    assert again.header.hop_by_hop_identifier != req.header.hop_by_hop_identifier
    assert (again.session_id, again.cc_request_number) == (req.session_id, 0)
    feed(gen, cca(again), now=7000)
    assert counters.stat("retransmitted") == 1 and counters.stat("sent") == 1
    assert counters.stat("max_latency_ns") == 7000  # from the first send


def test_hop_by_hop_ids_are_distinct_across_slots_and_requests():
    gen, _ = make(slots=4)
    first = requests(gen)
    feed(gen, b"".join(cca(r) for r in first))
    second = requests(gen)
    ids = [r.header.hop_by_hop_identifier for r in first + second]
    assert len(set(ids)) == 8
    assert len({r.header.end_to_end_identifier for r in first + second}) == 8


@pytest.mark.parametrize("mutation,counter", [
    ({"session_id": "someone;else;0000000000"}, "fail_session_id"),
    ({"reqno": 9}, "fail_request_number"),
    ({"result": 5012}, "fail_result_code"),
    ({"mscc_result": 5031}, "fail_result_code"),
    ({"octets": 1001}, "fail_over_request"),
    ({"rating_groups": [11]}, "fail_mscc"),
    ({"rating_groups": [10, 11]}, "fail_mscc"),
])
def test_a_wrong_answer_is_a_check_failure_and_the_slot_starts_afresh(mutation, counter):
    gen, counters = make(request_octets=1000)
    [req] = requests(gen)
    feed(gen, cca(req, **mutation))
    assert counters.stat(counter) == 1 and counters.stat("check_failed") == 1
    [nxt] = requests(gen)
    assert nxt.cc_request_type == codec.INITIAL and nxt.session_id != req.session_id


def test_a_missing_mscc_is_a_check_failure():
    gen, counters = make(rating_groups=(10, 20), per_session=(2, 2))
    [req] = requests(gen)
    feed(gen, cca(req, rating_groups=[10]))
    assert counters.stat("fail_mscc") == 1


def test_grants_beyond_the_plan_fail():
    # Plan 2,500 octets: grants of 1,000 (held 1,000), then report 1,000 and get
    # 1,000 (2,000), then 1,000 more (3,000 > 2,500).
    gen, counters = make(updates=5, use=(100, 100), plan_octets=2500)
    for _ in range(2):
        [req] = requests(gen)
        feed(gen, cca(req))
    assert counters.stat("check_failed") == 0
    [req] = requests(gen)
    feed(gen, cca(req))
    assert counters.stat("fail_over_plan") == 1


def test_relaxed_mode_accepts_the_echoed_request():
    gen, counters = make(relaxed=True)
    [req] = requests(gen)
    raw = bytearray(req.as_bytes())
    raw[4] ^= codec.FLAG_REQUEST
    feed(gen, bytes(raw))
    assert counters.stat("answered") == 1 and counters.stat("check_failed") == 0
    [nxt] = requests(gen)
    assert (nxt.cc_request_type, used_octets(nxt)) == (codec.UPDATE, [[0]])


def test_refusals_and_zero_grants_end_the_session():
    gen, counters = make()
    [req] = requests(gen)
    feed(gen, cca(req, result=4012, octets=None, mscc_result=4012))
    assert counters.stat("refused") == 1
    [req] = requests(gen)
    assert req.cc_request_type == codec.INITIAL  # no CCR-T after a failed CCA-I
    feed(gen, cca(req, octets=None))  # 2001 without a grant
    [req] = requests(gen)
    assert (req.cc_request_type, used_octets(req), counters.stat("zero_grants")) == (3, [[0]], 1)


def test_timeouts_free_the_slot_and_the_late_answer_is_unmatched():
    gen, counters = make(timeout_ns=1_000)
    [req] = requests(gen, now=0)
    assert gen.expire(now_ns=2_000) == 1
    assert counters.stat("timeouts") == 1 and gen.outstanding == 0
    feed(gen, cca(req))
    assert counters.stat("unmatched") == 1 and counters.stat("answered") == 1 - 1


def test_other_messages_and_partial_frames_are_left_to_the_caller():
    gen, counters = make()
    [req] = requests(gen)
    dwr = codec.encode_message(codec.CMD_DEVICE_WATCHDOG, codec.FLAG_REQUEST, 0, 5, 5,
                               [codec.avp_str(codec.AVP_ORIGIN_HOST, "ocs")])
    answer = cca(req)
    consumed, n_other = feed(gen, dwr + answer + answer[:10])
    assert (consumed, n_other, int(gen.other[0])) == (len(dwr) + len(answer), 1, 0)
    assert counters.stat("answered") == 1
    assert feed(gen, b"\x07" + dwr[1:])[0] == -1


def test_open_loop_sends_on_schedule_and_counts_queueing_as_latency():
    # 1,000 requests/s from t=0: request k is due at k ms. Two connections
    # interleave: this one (phase 1 of 2) sends requests 1, 3, 5, ...
    plan = schedule.build(schedule.Shape(1000), horizon=10)
    gen, counters = make(slots=1, schedule=plan, stride=2, phase=1, timeout_ns=10 * MS)
    gen.start(0)
    assert requests(gen, now=0) == [] and gen.next_due_ns == 1 * MS
    [req] = requests(gen, now=1 * MS)
    assert requests(gen, now=3 * MS) == []  # due, but the only session awaits its answer
    assert gen.backlog(3 * MS) == 1
    feed(gen, cca(req), now=4 * MS)  # answered 3 ms after it was due
    [nxt] = requests(gen, now=4 * MS)  # the queued request goes now ...
    feed(gen, cca(nxt), now=5 * MS)  # ... and waited 2 ms in all
    assert counters.stat("max_latency_ns") == 3 * MS
    assert counters.latency.sum() == counters.wire.sum() == 2
    # A request that waits for a session longer than the timeout (10 ms) times
    # out unsent: at 30 ms, those due at 7, 9, ..., 19 ms; 21..29 still wait.
    [req] = requests(gen, now=5 * MS)
    assert requests(gen, now=30 * MS) == []
    assert counters.stat("timeouts_unsent") == counters.stat("timeouts") == 7
    assert gen.backlog(30 * MS) == 5


def test_open_loop_stops_at_the_end_of_the_schedule_window():
    plan = schedule.build(schedule.Shape(1000), horizon=10)
    gen, counters = make(slots=100, schedule=plan, timeout_ns=1000 * MS)
    gen.start(0)
    assert len(requests(gen, now=50 * MS, until=20 * MS)) == 20  # due at 0..19 ms
    assert gen.next_due_ns == FOREVER
