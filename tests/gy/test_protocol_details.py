"""Smaller protocol rules the probes found missing (RFC 4006, RFC 6733):
an event request without Requested-Action is refused (5005, Failed-AVP);
Multiple-Services-Indicator NOT_SUPPORTED with MSCCs contradicts itself
(5007); a failed CCR-U ends the session (RFC 4006 7: Open -> Idle) while
the CCR-T that follows still has its usage debited; CC-Session-Failover
is sent when configured."""
from __future__ import annotations

from pathlib import Path

from diameter.message.avp import Avp

from ocs.diameter import constants as c
from ocs.diameter.peer import LocalIdentity
from ocs.gy.app import CreditControlApplication
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, T, E = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.TERMINATION_REQUEST, c.EVENT_REQUEST
A = "8613900000001"
MB = 1 << 20


def charge(ch, *reqs, now=None):
    return ch.batch(*reqs, now=now)


def failed(answer) -> list[int]:
    (f,) = [a for a in answer.avps if a.code == c.AVP_FAILED_AVP]
    return [x.code for x in f.value]


def test_an_event_without_requested_action_is_refused(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    before = ch.view(A)
    (a,) = charge(ch, build_ccr("pgw.test", "e1", E, 0, A, [{"rg": 10, "rsu": MB}]))
    assert a.result_code == c.MISSING_AVP and failed(a) == [436]
    assert ch.view(A) == before


def test_multiple_services_not_supported_with_msccs_is_contradictory(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    req = build_ccr("pgw.test", "s1", I, 0, A, [{"rg": 10, "rsu": 0}])
    req.append_avp(Avp.new(c.AVP_MULTIPLE_SERVICES_INDICATOR, value=0))
    (a,) = charge(ch, req)
    assert a.result_code == c.CONTRADICTING_AVPS and failed(a) == [c.AVP_MULTIPLE_SERVICES_INDICATOR]
    assert not ch.store.session_index
    ok = build_ccr("pgw.test", "s2", I, 0, A, [{"rg": 10, "rsu": 0}])
    ok.append_avp(Avp.new(c.AVP_MULTIPLE_SERVICES_INDICATOR, value=1))
    (a,) = charge(ch, ok)
    assert a.result_code == 2001


def test_a_failed_update_ends_the_session_and_the_termination_is_still_charged(tmp_path):
    """8613800000001 (cn-89-3g, prepaid, 100 yuan, 400 MB, then 300
    micro-yuan a started KB): its bundle used up, then a report of 1,000 MB
    more (307.2 yuan, debited: the usage happened) leaves nothing to grant."""
    ch = Charging(tmp_path / "data", RULES)
    B = "8613800000001"
    charge(ch, build_ccr("pgw.test", "s", I, 0, B, [], top={"rsu": 0}))
    (a,) = charge(ch, build_ccr("pgw.test", "s", U, 1, None, [], top={"rsu": 0, "used": 400 * MB}))
    assert a.result_code == 2001
    # 100 yuan buys 333,333 KB: ask again after reporting 1 GB of overage
    (a,) = charge(ch, build_ccr("pgw.test", "s", U, 2, None, [], top={"rsu": 0, "used": 1000 * MB}))
    assert a.result_code == c.CREDIT_LIMIT_REACHED
    assert b"s" not in ch.store.session_index, "RFC 4006 7: the session is Idle"
    spent = ch.view(B)["balance_micro"]
    (a,) = charge(ch, build_ccr("pgw.test", "s", T, 3, None, [], top={"used": MB}))
    assert a.result_code == 2001
    assert ch.view(B)["balance_micro"] == spent - 1024 * 300     # the last MB: 1,024 started KB
    assert b"s" not in ch.store.session_index


def test_cc_session_failover_is_sent_when_configured(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    (a,) = charge(ch, build_ccr("pgw.test", "s1", I, 0, A, [{"rg": 10, "rsu": 0}]))
    assert a.cc_session_failover is None
    ch.app = CreditControlApplication(ch.store, ch.rules, LocalIdentity(origin_host="ocs.test",
                                                                       origin_realm="localdomain"),
                                      session_failover=True)
    (a,) = charge(ch, build_ccr("pgw.test", "s2", I, 0, A, [{"rg": 10, "rsu": 0}]))
    assert a.result_code == 2001 and a.cc_session_failover == c.FAILOVER_SUPPORTED


def test_more_msccs_than_allowed_get_5009_with_the_first_one_beyond(tmp_path):
    """A CCR may carry at most `max_mscc` (64) MSCCs: one with 10,000 is
    refused (5009, RFC 6733 7.5: Failed-AVP the first MSCC beyond the
    limit) before it is decoded, and charges nothing."""
    ch = Charging(tmp_path / "data", RULES)
    charge(ch, build_ccr("pgw.test", "s", I, 0, A, [{"rg": 10, "rsu": 0}]))
    before = ch.view(A)
    many = [{"rg": k, "used": 1000} for k in range(10_000)]
    (a,) = charge(ch, build_ccr("pgw.test", "s", U, 1, None, many))
    assert a.result_code == c.AVP_OCCURS_TOO_MANY_TIMES
    (f,) = [x for x in a.avps if x.code == c.AVP_FAILED_AVP]
    (mscc,) = f.value
    assert mscc.code == c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL
    assert [x.value for x in mscc.value if x.code == c.AVP_RATING_GROUP] == [64]
    assert ch.view(A) == before
    (a,) = charge(ch, build_ccr("pgw.test", "s", U, 2, None, [{"rg": k, "used": 0} for k in range(64)]))
    assert a.result_code == 2001
