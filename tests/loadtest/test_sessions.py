"""The compiled PGW session model, driven without sockets.

Requests come out of Generator.step as bytes, are decoded by python-diameter,
and answers built by python-diameter go back in, so these tests also check
the generator's encoder and decoder against the library end to end.
"""
import numpy as np
import pytest
from diameter.message import Message
from diameter.message.avp.grouped import GrantedServiceUnit, MultipleServicesCreditControl

from loadtest import codec, sessions
from loadtest.histogram import LatencyHistogram
from loadtest.sessions import Generator

FIRST = 8613900000000


def make(window=1, updates=2, use_percent=50, relaxed=False):
    templates = codec.CcrTemplates("pgw1.lt", "lt", "ocs.example", 13, 10, boot=1)
    gen = Generator(window, templates, FIRST, 3, updates, use_percent, 10, relaxed,
                    (2001, 4012))
    hist = LatencyHistogram()
    gen.bind_histogram(hist.counts)
    return gen, hist


def requests(gen, now=0):
    """Whatever the generator sends now, decoded."""
    _, _, n = gen.step(np.zeros(0, np.uint8), 0, now, True)
    raw = gen.out[:n].tobytes()
    frames, used = codec.split_frames(raw)
    assert used == len(raw)
    return [Message.from_bytes(raw[a:b]) for a, b in frames]


def feed(gen, raw: bytes, now=1000):
    rx = np.frombuffer(raw, np.uint8).copy()
    consumed, n_other, _ = gen.step(rx, len(rx), now, False)
    return consumed, n_other


def cca(req, result=2001, octets=1000, mscc_result=2001, session_id=None, reqno=None):
    ans = req.to_answer()
    ans.session_id = session_id or req.session_id
    ans.origin_host, ans.origin_realm = b"ocs.example", b"ocs.example"
    ans.auth_application_id = 4
    ans.result_code = result
    ans.cc_request_type = req.cc_request_type
    ans.cc_request_number = req.cc_request_number if reqno is None else reqno
    if req.cc_request_type != codec.TERMINATE:
        gsu = None if octets is None else GrantedServiceUnit(cc_total_octets=octets)
        ans.multiple_services_credit_control = [MultipleServicesCreditControl(
            rating_group=10, granted_service_unit=gsu, result_code=mscc_result)]
    return ans.as_bytes()


def stat(gen, name):
    return int(gen.stats[sessions.STAT_NAMES.index(name)])


def used_octets(req):
    [mscc] = req.multiple_services_credit_control
    return [u.cc_total_octets for u in mscc.used_service_unit]


def test_a_session_runs_initial_updates_terminate_then_the_next_subscriber():
    gen, hist = make(updates=2, use_percent=50)
    seen, grants = [], [1000, 3000, 501]
    for step in range(5):
        [req] = requests(gen, now=step * 10_000)
        seen.append(req)
        feed(gen, cca(req, octets=grants[step] if step < 3 else None),
             now=step * 10_000 + 2_500)
    kinds = [(r.cc_request_type, r.cc_request_number) for r in seen]
    assert kinds == [(1, 0), (2, 1), (2, 2), (3, 3), (1, 0)]
    assert [used_octets(r) for r in seen[1:4]] == [[500], [1500], [250]]
    assert len({r.session_id for r in seen[:4]}) == 1
    assert seen[4].session_id != seen[0].session_id
    msisdns = [r.subscription_id[0].subscription_id_data for r in (seen[0], seen[4])]
    assert msisdns == [str(FIRST), str(FIRST + 1)]
    assert stat(gen, "answered") == 5 and stat(gen, "check_failed") == 0
    assert stat(gen, "sessions_completed") == 1
    assert stat(gen, "octets_granted") == 4501 and stat(gen, "octets_reported") == 2250
    assert hist.total == 5 and 2500 <= hist.percentile(100) <= 2500 * 1.008


def test_hop_by_hop_ids_are_distinct_across_slots_and_requests():
    gen, _ = make(window=4)
    first = requests(gen)
    for req in first:
        feed(gen, cca(req))
    second = requests(gen)
    ids = [r.header.hop_by_hop_identifier for r in first + second]
    assert len(set(ids)) == 8
    assert len({r.header.end_to_end_identifier for r in first + second}) == 8


@pytest.mark.parametrize("mutation,counter", [
    ({"session_id": "someone;else;0000000000"}, "fail_session_id"),
    ({"reqno": 9}, "fail_request_number"),
    ({"result": 5012}, "fail_result_code"),
    ({"mscc_result": 5031}, "fail_result_code"),
])
def test_a_wrong_answer_is_a_check_failure_and_the_slot_starts_afresh(mutation, counter):
    gen, _ = make()
    [req] = requests(gen)
    feed(gen, cca(req, **mutation))
    assert stat(gen, counter) == 1 and stat(gen, "check_failed") == 1
    [nxt] = requests(gen)
    assert nxt.cc_request_type == codec.INITIAL and nxt.session_id != req.session_id


def test_relaxed_mode_accepts_the_echoed_request():
    gen, _ = make(relaxed=True)
    [req] = requests(gen)
    raw = bytearray(req.as_bytes())
    raw[4] ^= codec.FLAG_REQUEST
    feed(gen, bytes(raw))
    assert stat(gen, "answered") == 1 and stat(gen, "check_failed") == 0
    [nxt] = requests(gen)
    assert (nxt.cc_request_type, used_octets(nxt)) == (codec.UPDATE, [0])


def test_refusals_and_zero_grants_end_the_session():
    gen, _ = make()
    [req] = requests(gen)
    feed(gen, cca(req, result=4012, octets=None, mscc_result=4012))
    assert stat(gen, "refused") == 1
    [req] = requests(gen)
    assert req.cc_request_type == codec.INITIAL
    feed(gen, cca(req, octets=None))  # 2001 without a grant
    [req] = requests(gen)
    assert (req.cc_request_type, used_octets(req), stat(gen, "zero_grants")) == (3, [0], 1)


def test_timeouts_free_the_slot_and_the_late_answer_is_unmatched():
    gen, _ = make()
    [req] = requests(gen, now=0)
    assert gen.expire(now_ns=2_000, timeout_ns=1_000) == 1
    assert stat(gen, "timeouts") == 1 and gen.outstanding == 0
    feed(gen, cca(req))
    assert stat(gen, "unmatched") == 1 and stat(gen, "answered") == 0


def test_other_messages_and_partial_frames_are_left_to_the_caller():
    gen, _ = make()
    [req] = requests(gen)
    dwr = codec.encode_message(codec.CMD_DEVICE_WATCHDOG, codec.FLAG_REQUEST, 0, 5, 5,
                               [codec.avp_str(codec.AVP_ORIGIN_HOST, "ocs")])
    answer = cca(req)
    consumed, n_other = feed(gen, dwr + answer + answer[:10])
    assert (consumed, n_other, int(gen.other[0])) == (len(dwr) + len(answer), 1, 0)
    assert stat(gen, "answered") == 1
    assert feed(gen, b"\x07" + dwr[1:])[0] == -1
