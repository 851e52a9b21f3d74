"""Duplicate detection (RFC 6733 6.2 and 8.8, RFC 4006 5.7): an answer is
given again only to the same request: the same Origin-Host and
End-to-End-Identifier *and* the same Session-Id, CC-Request-Type and
CC-Request-Number. A gateway that restarts its identifier counter, or
reuses one after RFC 6733's four minutes, sends a new request, which is
charged as one. Kept answers expire (docs/architecture.md says after how
long), also after a restart."""
from __future__ import annotations

import time
from pathlib import Path

from diameter.message import Message

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr, mscc_values

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, T, E = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.TERMINATION_REQUEST, c.EVENT_REQUEST
A, B = "8613900000001", "8613900000002"
MB = 1 << 20


def frame(sid, rtype, number, msisdn=None, rg=10, used=None, e2e=0x5151, action=None, retransmit=False):
    req = build_ccr("pgw.test", sid, rtype, number, msisdn, [{"rg": rg, "rsu": 0, "used": used}], action=action)
    req.header.end_to_end_identifier = e2e
    req.header.is_retransmit = retransmit
    return req.as_bytes()


def charge(ch, frames, now):
    got = ch.app.process(frames, now)
    if got.record is not None:
        ch.store.write(got.record)
    return [Message.from_bytes(a) for a in got.answers]


def test_a_reused_end_to_end_id_with_another_session_is_a_new_request(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    first, = charge(ch, [frame("sa", I, 0, A, rg=10)], now)
    second, = charge(ch, [frame("sb", I, 0, B, rg=20)], now + 3)
    assert first.session_id == "sa" and second.session_id == "sb", "an answer carries its own request's Session-Id"
    assert second.result_code == 2001 and 20 in mscc_values(second)
    assert b"sb" in ch.store.session_index, "the second session is open"
    # its CCR-U is charged: the session exists
    before = ch.view(B)["balance_micro"]
    upd, = charge(ch, [frame("sb", U, 1, rg=20, used=MB, e2e=0x5152)], now + 4)
    assert upd.result_code == 2001


def test_a_reused_id_on_an_update_or_event_is_charged(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    charge(ch, [frame("sa", I, 0, A, e2e=0x7000)], now)
    charge(ch, [frame("sb", I, 0, B, e2e=0x7001)], now)
    used_before = ch.view(B)
    upd, = charge(ch, [frame("sb", U, 1, used=3 * MB, e2e=0x7000)], now + 5)   # A's CCR-I id, reused
    assert upd.session_id == "sb" and upd.cc_request_type == U and upd.result_code == 2001
    assert ch.view(B) != used_before, "the usage it reports is charged"


def test_the_same_request_again_is_answered_once(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    charge(ch, [frame("sa", I, 0, A)], now)
    upd = frame("sa", U, 1, used=MB, e2e=0x7100)
    first, = charge(ch, [upd], now + 1)
    view = ch.view(A)
    again, = charge(ch, [frame("sa", U, 1, used=MB, e2e=0x7100, retransmit=True)], now + 2)
    assert again.as_bytes()[20:] == first.as_bytes()[20:]
    assert ch.view(A) == view, "nothing charged again"


def test_kept_answers_expire(tmp_path):
    """After the bound (longer than RFC 6733's four minutes), an event
    with a reused identifier and the same identity is charged anew: the
    gateway reused the identifier, nothing is left to repeat."""
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    ev = lambda t: frame("ev1", E, 0, A, used=None, e2e=0x7200, action=c.DIRECT_DEBITING)
    charge(ch, [frame("sa", I, 0, A)], now)
    first, = charge(ch, [ev(now)], now)
    assert first.result_code == 2001
    before = ch.view(A)
    charge(ch, [ev(now)], now + 60)
    assert ch.view(A) == before, "a minute later it is a retransmission"
    bound = ch.store.dedup.seconds
    assert bound > 240
    charge(ch, [ev(now)], now + bound + 1)
    assert ch.view(A) != before, "past the bound it is charged"


def test_duplicates_survive_a_restart_and_expire_after_it(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    charge(ch, [frame("sa", I, 0, A, e2e=0x7300)], now)
    ch = ch.crash()
    again, = charge(ch, [frame("sa", I, 0, A, e2e=0x7300, retransmit=True)], now + 1)
    assert again.result_code == 2001
    other, = charge(ch, [frame("sc", I, 0, B, e2e=0x7300)], now + 2)
    assert other.session_id == "sc" and b"sc" in ch.store.session_index


def test_two_requests_sharing_an_id_in_one_batch_are_both_charged(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    a, b = charge(ch, [frame("sa", I, 0, A, e2e=0x7400), frame("sb", I, 0, B, e2e=0x7400)], now)
    assert (a.session_id, b.session_id) == ("sa", "sb")
    assert b"sa" in ch.store.session_index and b"sb" in ch.store.session_index


def test_a_lower_request_number_is_not_charged_again(tmp_path):
    """RFC 4006 5.2: CC-Request-Numbers grow within a session; one that
    arrives after a higher one (a late duplicate, or out of order) is
    answered and charges nothing."""
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    charge(ch, [frame("sa", I, 0, A)], now)
    charge(ch, [frame("sa", U, 1, used=MB, e2e=0x7500)], now + 1)
    charge(ch, [frame("sa", U, 2, used=MB, e2e=0x7501)], now + 2)
    view = ch.view(A)
    late, = charge(ch, [frame("sa", U, 1, used=MB, e2e=0x7502)], now + 3)
    assert late.result_code == 2001
    assert ch.view(A) == view
