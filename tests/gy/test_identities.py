"""Who a request is from (RFC 6733 4.3.1, 8; RFC 4006 8.46): an empty or
malformed Session-Id, Origin-Host, Origin-Realm or Subscription-Id-Data
gets 5004 DIAMETER_INVALID_AVP_VALUE with that AVP in Failed-AVP and
charges nothing; a session answers only the Origin-Host that opened it, so
one gateway cannot report usage into another's session."""
from __future__ import annotations

from pathlib import Path

import pytest

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U = c.INITIAL_REQUEST, c.UPDATE_REQUEST
A, B = "8613900000001", "8613900000002"
MB = 1 << 20


def charge(ch, *reqs):
    return ch.batch(*reqs)


def failed_codes(answer) -> list[int]:
    (failed,) = [a for a in answer.avps if a.code == c.AVP_FAILED_AVP]
    return [x.code for x in failed.value]


@pytest.mark.parametrize("what", ["session", "host", "realm", "host-newline", "subscription"])
def test_empty_or_malformed_identities_get_5004(tmp_path, what):
    ch = Charging(tmp_path / "data", RULES)
    before = ch.view(A)
    req = build_ccr("pgw.test", "s1", I, 0, A, [{"rg": 10, "rsu": 0}])
    expected = {"session": c.AVP_SESSION_ID, "host": c.AVP_ORIGIN_HOST, "realm": c.AVP_ORIGIN_REALM,
                "host-newline": c.AVP_ORIGIN_HOST, "subscription": c.AVP_SUBSCRIPTION_ID}[what]
    if what == "session":
        req.session_id = ""
    elif what == "host":
        req.origin_host = b""
    elif what == "realm":
        req.origin_realm = b""
    elif what == "host-newline":
        req.origin_host = b"pgw.test\n2026-12-03 INFO ocs: forged"
    else:
        req = build_ccr("pgw.test", "s1", I, 0, "", [{"rg": 10, "rsu": 0}])
        from diameter.message.avp.grouped import SubscriptionId
        req.subscription_id = [SubscriptionId(subscription_id_type=0, subscription_id_data="")]
    (a,) = charge(ch, req)
    assert a.result_code == c.INVALID_AVP_VALUE
    assert failed_codes(a) == [expected]
    assert not ch.store.session_index and ch.view(A) == before


def test_a_shared_empty_session_id_cannot_debit_another_subscriber(tmp_path):
    """The reproduction: gateway B's usage for subscriber B went to A's session."""
    ch = Charging(tmp_path / "data", RULES)
    (a,) = charge(ch, build_ccr("pgw-a.test", "", I, 0, A, [{"rg": 10, "rsu": 0}]))
    assert a.result_code == c.INVALID_AVP_VALUE
    assert not ch.store.session_index


def test_a_session_answers_only_the_host_that_opened_it(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    (a,) = charge(ch, build_ccr("pgw-a.test", "shared-1", I, 0, A, [{"rg": 10, "rsu": 0}]))
    assert a.result_code == 2001
    view_a = ch.view(A)
    # another gateway reports usage into it, alone and in a batch the bulk path takes
    (b,) = charge(ch, build_ccr("pgw-b.test", "shared-1", U, 1, None, [{"rg": 10, "rsu": 0, "used": 5 * MB}]))
    assert b.result_code == c.UNKNOWN_SESSION_ID
    batch = [build_ccr("pgw-b.test", "shared-1", U, 1, None, [{"rg": 10, "rsu": 0, "used": 5 * MB}])]
    (b,) = charge(ch, *batch)
    assert b.result_code == c.UNKNOWN_SESSION_ID
    assert ch.view(A) == view_a, "nothing charged to the session's subscriber"
    # its own gateway goes on
    (a,) = charge(ch, build_ccr("pgw-a.test", "shared-1", U, 1, None, [{"rg": 10, "rsu": 0, "used": MB}]))
    assert a.result_code == 2001


@pytest.mark.parametrize("relayed", [False, True])
def test_requests_for_other_realms_and_hosts_are_not_charged(tmp_path, relayed):
    """RFC 6733 6.1: a server that does not relay answers a request for a
    realm it does not serve with 3003 and one for another host with 3002
    (E-bit set, 7.1.3), and charges nothing. Ours is realm `localdomain`,
    host `ocs.test` (tests/support/charging.py), compared without case."""
    from diameter.message.avp.grouped import ProxyInfo
    ch = Charging(tmp_path / "data", RULES)
    before = ch.view(A)

    def req(sid, realm=b"localdomain", host=None):
        r = build_ccr("pgw.test", sid, I, 0, A, [{"rg": 10, "rsu": 0}])
        r.destination_realm = realm
        if host is not None:
            r.destination_host = host
        if relayed:
            r.proxy_info = [ProxyInfo(proxy_host=b"dra.example", proxy_state=b"1")]
        return r
    other_realm, other_host, ours = charge(ch, req("s1", realm=b"other.example"),
                                           req("s2", host=b"ocs2.other.example"),
                                           req("s3", realm=b"LocalDomain", host=b"OCS.test"))
    assert other_realm.result_code == c.REALM_NOT_SERVED and other_realm.header.is_error
    assert other_host.result_code == c.UNABLE_TO_DELIVER and other_host.header.is_error
    assert ours.result_code == 2001
    assert set(ch.store.session_index) == {b"s3"}
    charge(ch, build_ccr("pgw.test", "s3", c.TERMINATION_REQUEST, 1, None, [{"rg": 10, "used": 0}]))
    assert ch.view(A)["balance_micro"] == before["balance_micro"]
