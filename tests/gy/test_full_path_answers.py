"""A request that takes the full decoder (a relay's Proxy-Info sends it
there) and is refused, answered from the duplicate cache, or repeats its
session's last CC-Request-Number keeps its own answer when it shares a
batch with a charged request: a Diameter Result-Code, its MSCCs' results,
never the placeholder the charging step starts from."""
from __future__ import annotations

import time
from pathlib import Path

from diameter.message import Message
from diameter.message.avp.grouped import ProxyInfo

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U = c.INITIAL_REQUEST, c.UPDATE_REQUEST
A, B = "8613900000001", "8613900000002"


def frame(sid, rtype, number, msisdn=None, used=None, relayed=False, e2e=None, retransmit=False):
    req = build_ccr("pgw.test", sid, rtype, number, msisdn, [{"rg": 10, "rsu": 0, "used": used}])
    if relayed:
        req.proxy_info = [ProxyInfo(proxy_host=b"dra1.example", proxy_state=b"\x01")]
    if e2e is not None:
        req.header.end_to_end_identifier = e2e
    req.header.is_retransmit = retransmit
    return req.as_bytes()


def charge(ch, frames):
    got = ch.app.process(frames, time.time())
    if got.record is not None:
        ch.store.write(got.record)
    return [Message.from_bytes(a) for a in got.answers], got.results


def test_refused_relayed_requests_keep_their_result_codes(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    charge(ch, [frame("sa", I, 0, A)])
    answers, results = charge(ch, [frame("nowhere", U, 1, used=10, relayed=True),     # 5002
                                   frame("sz", I, 0, "8613700000000", relayed=True),  # 5030
                                   frame("sa", U, 1, used=1000)])                     # charged
    assert [a.result_code for a in answers] == [c.UNKNOWN_SESSION_ID, c.USER_UNKNOWN, 2001]
    assert results == [c.UNKNOWN_SESSION_ID, c.USER_UNKNOWN, 2001]
    for a in answers[:2]:
        assert not a.multiple_services_credit_control, "a refused request gets no grant"
        assert [p.proxy_host for p in a.proxy_info] == [b"dra1.example"]


def test_relayed_retransmission_and_repeat_in_a_charged_batch(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    charge(ch, [frame("sa", I, 0, A), frame("sb", I, 0, B)])
    first, _ = charge(ch, [frame("sa", U, 1, used=1000, relayed=True, e2e=0x9000)])
    assert first[0].result_code == 2001
    granted = first[0].multiple_services_credit_control[0].granted_service_unit.cc_total_octets
    answers, results = charge(ch, [frame("sa", U, 1, used=1000, relayed=True, e2e=0x9000, retransmit=True),
                                   frame("sb", U, 1, used=1000)])
    assert [a.result_code for a in answers] == [2001, 2001]
    m = answers[0].multiple_services_credit_control[0]
    assert m.result_code == 2001 and m.granted_service_unit.cc_total_octets == granted
    # the same request number again under a new identifier: not charged again, answered 2001
    view = ch.view(A)
    answers, _ = charge(ch, [frame("sa", U, 1, used=1000, relayed=True), frame("sb", U, 2, used=1000)])
    assert [a.result_code for a in answers] == [2001, 2001]
    m = answers[0].multiple_services_credit_control[0]
    assert m.result_code == 2001 and m.granted_service_unit.cc_total_octets == granted
    assert ch.view(A) == view
