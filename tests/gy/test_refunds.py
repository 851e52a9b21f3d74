"""REFUND_ACCOUNT (RFC 4006 6.4) gives back what a direct debit took,
never more, only to an Origin-Host the configuration allows, once per
refunded octet, and survives a crash (ocs/gy/refund.py). Money by hand:
subscriber 8613800000001 is on cn-89-3g (400 MB, then 0.0003 yuan per
started KB = 300 micro-yuan), balance 100 yuan."""
from __future__ import annotations

from pathlib import Path

from diameter.message.avp import Avp

from ocs.diameter import constants as c
from ocs.gy.refund import AVP_REFUND_INFORMATION
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, E = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.EVENT_REQUEST
B, OTHER = "8613800000001", "8613800000002"
KB, MB = 1 << 10, 1 << 20
GW = "pgw.test"


def event(sid, action, msisdn=B, rsu=None, token=None, host=GW, e2e=None, retransmit=False):
    req = build_ccr(host, sid, E, 0, msisdn, [{"rg": 10, "rsu": rsu}], action=action)
    if token is not None:
        req.append_avp(Avp.new(AVP_REFUND_INFORMATION, c.VENDOR_3GPP, value=token))
    if e2e is not None:
        req.header.end_to_end_identifier = e2e
    req.header.is_retransmit = retransmit
    return req


def charge(ch, *reqs):
    return ch.batch(*reqs)


def token_of(answer) -> bytes:
    (a,) = [x for x in answer.avps if x.code == AVP_REFUND_INFORMATION and x.vendor_id == c.VENDOR_3GPP]
    return a.value


def balance(ch, msisdn=B) -> int:
    return ch.view(msisdn)["balance_micro"]


def exhaust_bundle(ch):
    charge(ch, build_ccr(GW, "s", I, 0, B, [{"rg": 10, "rsu": 0}]))
    (a,) = charge(ch, build_ccr(GW, "s", U, 1, None, [{"rg": 10, "rsu": 0, "used": 400 * MB}]))
    assert a.result_code == 2001


def test_refunds_are_refused_unless_configured(tmp_path):
    """The reproduction: any gateway could refund 100 GB never charged."""
    ch = Charging(tmp_path / "data", RULES)
    before = balance(ch)
    (a,) = charge(ch, event("r1", c.REFUND_ACCOUNT, rsu=100 << 30))
    assert a.result_code == 5003
    assert balance(ch) == before


def test_a_refund_gives_back_at_most_what_the_debit_took(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    ch.app.refund_hosts = frozenset({GW.encode()})
    exhaust_bundle(ch)
    start = balance(ch)
    (d,) = charge(ch, event("d1", c.DIRECT_DEBITING, rsu=10 * KB))
    assert d.result_code == 2001
    assert balance(ch) == start - 10 * 300                          # 10 started KB
    tok = token_of(d)
    # no reference, an unknown one, too much: refused, nothing moves
    (a,) = charge(ch, event("r0", c.REFUND_ACCOUNT, rsu=KB))
    assert a.result_code == c.MISSING_AVP
    (a,) = charge(ch, event("r0b", c.REFUND_ACCOUNT, rsu=KB, token=b"ocs-debit:nothing"))
    assert a.result_code == c.INVALID_AVP_VALUE
    (a,) = charge(ch, event("r0c", c.REFUND_ACCOUNT, rsu=11 * KB, token=tok))
    assert a.result_code == c.INVALID_AVP_VALUE
    (a,) = charge(ch, event("r0d", c.REFUND_ACCOUNT, msisdn=OTHER, rsu=KB, token=tok))
    assert a.result_code == c.INVALID_AVP_VALUE
    assert balance(ch) == start - 3000
    # 4 KB back, then the rest (no Requested-Service-Unit): 3,000 in all, never more
    (a,) = charge(ch, event("r1", c.REFUND_ACCOUNT, rsu=4 * KB, token=tok, e2e=0xABC))
    assert a.result_code == 2001 and a.cost_information.unit_value.value_digits == 1200
    assert balance(ch) == start - 1800
    again = event("r1", c.REFUND_ACCOUNT, rsu=4 * KB, token=tok, e2e=0xABC, retransmit=True)
    (b,) = charge(ch, again)
    assert b.result_code == 2001 and balance(ch) == start - 1800, "a retransmission refunds nothing"
    ch = ch.crash()
    ch.app.refund_hosts = frozenset({GW.encode()})
    (a,) = charge(ch, event("r2", c.REFUND_ACCOUNT, token=tok))
    assert a.result_code == 2001 and a.cost_information.unit_value.value_digits == 1800
    assert balance(ch) == start
    (a,) = charge(ch, event("r3", c.REFUND_ACCOUNT, rsu=1, token=tok))
    assert a.result_code == c.INVALID_AVP_VALUE, "nothing is left of the debit"
    assert balance(ch) == start
    ch = ch.restart()
    assert balance(ch) == start


def test_a_refund_in_a_batch_with_charges(tmp_path):
    ch = Charging(tmp_path / "data", RULES)
    ch.app.refund_hosts = frozenset({GW.encode()})
    exhaust_bundle(ch)
    start = balance(ch)
    (d,) = charge(ch, event("d1", c.DIRECT_DEBITING, rsu=2 * KB))
    (a, u) = charge(ch, event("r1", c.REFUND_ACCOUNT, token=token_of(d)),
                    build_ccr(GW, "s", U, 2, None, [{"rg": 10, "rsu": 0, "used": KB}]))
    assert (a.result_code, u.result_code) == (2001, 2001)
    assert balance(ch) == start - 300                              # the debit back, 1 KB charged
    ch = ch.crash()
    assert balance(ch) == start - 300
