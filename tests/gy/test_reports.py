"""Reported usage is bounded (RFC 4006 8.19 Used-Service-Unit): a report
beyond any physical volume (16 TiB in one MSCC), or beyond what the
session's grant allows (the grant plus the plan's largest grant, what a
gateway can have let through while it asked for more), is refused with
5004 DIAMETER_INVALID_AVP_VALUE and the offending AVP in Failed-AVP, and
charges nothing: no balance, bucket or counter moves, and no 64-bit total
can be wrapped by repeating it."""
from __future__ import annotations

import time
from pathlib import Path

from diameter.message import Message

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, T = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.TERMINATION_REQUEST
A = "8613900000001"            # loadtest-100g: 100 GB, then 0.0003 yuan a KB; grants of 10 MB, at most 1 GB
B = "8613800000001"            # cn-89-3g: 100 yuan, 400 MB
MB, GB = 1 << 20, 1 << 30


def charge(ch, sid, rtype, number, msisdn=None, used=None, rsu=0, extra=()):
    msccs = [{"rg": 10, "rsu": rsu, "used": used}] + list(extra)
    got = ch.app.process([build_ccr("pgw.test", sid, rtype, number, msisdn, msccs).as_bytes()], time.time())
    if got.record is not None:
        ch.store.write(got.record)
    return Message.from_bytes(got.answers[0])


def failed_octets(answer) -> int:
    (failed,) = [a for a in answer.avps if a.code == c.AVP_FAILED_AVP]
    (usu,) = failed.value
    assert usu.code == c.AVP_USED_SERVICE_UNIT
    (octets,) = [x for x in usu.value if x.code == c.AVP_CC_TOTAL_OCTETS]
    return octets.value


def test_a_report_of_2_63_octets_is_refused_and_charges_nothing(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    assert charge(ch, "s", I, 0, B).result_code == 2001
    before = ch.view(B)
    for number, used in ((1, 2**63 - 1), (2, 2**62), (3, (1 << 44) + 1)):
        a = charge(ch, "s", U, number, used=used)
        assert a.result_code == c.INVALID_AVP_VALUE, used
        assert ch.view(B) == before, "nothing charged"
    # two halves of an overflow in one MSCC: refused as one
    a = charge(ch, "s", U, 4, used=2**62, extra=[{"rg": 10, "used": 2**62}])
    assert a.result_code in (c.INVALID_AVP_VALUE, c.AVP_OCCURS_TOO_MANY_TIMES)
    assert ch.view(B) == before
    assert charge(ch, "s", U, 5, used=MB).result_code == 2001, "the session goes on"


def test_a_report_beyond_the_grant_is_refused_with_failed_avp(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    first = charge(ch, "s", I, 0, A)
    granted = first.multiple_services_credit_control[0].granted_service_unit.cc_total_octets
    assert granted == 10 * MB
    before = ch.view(A)
    too_much = granted + GB + 1                      # the grant plus the largest grant, and one octet
    a = charge(ch, "s", U, 1, used=too_much)
    assert a.result_code == c.INVALID_AVP_VALUE
    assert failed_octets(a) == too_much
    assert ch.view(A) == before
    # up to the limit is usage: a gateway that went on while it asked for more
    a = charge(ch, "s", U, 1, used=granted + GB)
    assert a.result_code == 2001
    assert ch.view(A)["buckets"] != before["buckets"]


def test_repeated_large_reports_never_wrap(tmp_path):
    """The reproduction: 2**63-1 four times in a session. Every one is
    refused; the subscriber's money is what it was."""
    ch = Charging(tmp_path / "data", RULES)
    charge(ch, "s", I, 0, B)
    before = ch.view(B)["balance"]
    for n in range(1, 5):
        assert charge(ch, "s", U, n, used=2**63 - 1).result_code == c.INVALID_AVP_VALUE
    assert ch.view(B)["balance"] == before
