"""Session supervision (RFC 4006 7, Tcc): every grant carries a
Validity-Time, top-level grants included; a session silent past twice the
validity is released, and usage its gateway reports afterwards, within the
grace (`session_grace`), is still debited, also after a restart. Money by
hand: 8613800000001 is on cn-89-3g (400 MB, then 300 micro-yuan a started
KB)."""
from __future__ import annotations

import time
from pathlib import Path

from diameter.message import Message

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, T = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.TERMINATION_REQUEST
B = "8613800000001"
MB = 1 << 20


def charge(ch, req, now):
    got = ch.app.process([req.as_bytes()], now)
    if got.record is not None:
        ch.store.write(got.record)
    return Message.from_bytes(got.answers[0])


def expire(ch, now):
    rec = ch.app.expire(now)
    if rec is not None:
        ch.store.write(rec)


def used_octets(ch) -> int:
    return sum(b["used_octets"] for b in ch.view(B)["buckets"])


def test_top_level_grants_carry_validity_time(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    a = charge(ch, build_ccr("pgw.test", "s", I, 0, B, [], top={"rsu": 0}), time.time())
    assert a.result_code == 2001 and a.granted_service_unit.cc_total_octets > 0
    assert a.validity_time and a.validity_time > 0


def test_usage_after_a_silent_expiry_is_debited(tmp_path):
    """The reproduction: a top-level grant, silence past Tcc, then a CCR-U
    reporting 4 MB got 5002 and the 4 MB were never charged."""
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    a = charge(ch, build_ccr("pgw.test", "s", I, 0, B, [], top={"rsu": 0}), now)
    validity = a.validity_time
    expire(ch, now + 2 * validity + 1)
    assert b"s" not in ch.store.session_index, "released by supervision"
    before = used_octets(ch)
    late = now + 2 * validity + 60
    a = charge(ch, build_ccr("pgw.test", "s", U, 1, None, [], top={"rsu": 0, "used": 4 * MB}), late)
    assert a.result_code == 2001 and a.granted_service_unit.cc_total_octets > 0
    assert used_octets(ch) == before + 4 * MB
    a = charge(ch, build_ccr("pgw.test", "s", T, 2, None, [], top={"used": MB}), late + 1)
    assert a.result_code == 2001
    assert used_octets(ch) == before + 5 * MB
    assert b"s" not in ch.store.session_index


def test_late_usage_after_a_restart_and_past_the_grace(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    now = time.time()
    for sid in ("s1", "s2"):
        charge(ch, build_ccr("pgw.test", sid, I, 0, B, [{"rg": 10, "rsu": 0}]), now)
    validity = 3600
    expire(ch, now + 2 * validity + 1)
    ch = ch.crash()
    before = used_octets(ch)
    a = charge(ch, build_ccr("pgw.test", "s1", T, 1, None, [{"rg": 10, "used": 2 * MB}]), now + 2 * validity + 5)
    assert a.result_code == 2001 and used_octets(ch) == before + 2 * MB
    # another gateway cannot report into it
    a = charge(ch, build_ccr("pgw.other", "s2", T, 1, None, [{"rg": 10, "used": MB}]), now + 2 * validity + 6)
    assert a.result_code == c.UNKNOWN_SESSION_ID
    # past the grace: unknown
    grace = ch.store.session_grace
    a = charge(ch, build_ccr("pgw.test", "s2", T, 1, None, [{"rg": 10, "used": MB}]),
               now + 2 * validity + 2 + grace)
    assert a.result_code == c.UNKNOWN_SESSION_ID and used_octets(ch) == before + 2 * MB
