"""PRICE_ENQUIRY and CHECK_BALANCE (RFC 4006 6.1, 6.2, 6.5) read the
account and change nothing: its whole row, every bucket and reservation
counter, is the same before and after, whatever state the bundle is in."""
from __future__ import annotations

from pathlib import Path

import pytest

from ocs.diameter import constants as c
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

RULES = Path(__file__).parents[2] / "rules" / "demo"
I, U, E = c.INITIAL_REQUEST, c.UPDATE_REQUEST, c.EVENT_REQUEST
B = "8613800000001"            # cn-89-3g: 400 MB, then 0.0003 yuan a KB, 100 yuan
MB = 1 << 20


def charge(ch, *reqs):
    return ch.batch(*reqs)


def account(ch) -> tuple:
    row = ch.row(B)
    return ch.store.subs[row].tobytes(), ch.store.subs[int(ch.store.subs[row]["payer"])].tobytes()


@pytest.mark.parametrize("bundle_left", ["all", "exhausted"])
@pytest.mark.parametrize("action", [c.PRICE_ENQUIRY, c.CHECK_BALANCE])
def test_enquiries_are_read_only(tmp_path, action, bundle_left):
    ch = Charging(tmp_path / "data", RULES)
    (a,) = charge(ch, build_ccr("pgw.test", "s", I, 0, B, [{"rg": 10, "rsu": 0}]))
    if bundle_left == "exhausted":
        (a,) = charge(ch, build_ccr("pgw.test", "s", U, 1, None, [{"rg": 10, "rsu": 0, "used": 400 * MB}]))
        assert a.result_code == 2001
    before = account(ch)
    for k in range(3):
        ev = build_ccr("pgw.test", f"e{k}", E, 0, B, [{"rg": 10, "rsu": MB}], action=action)
        (a,) = charge(ch, ev)
        assert a.result_code == 2001
        assert account(ch) == before, f"the account changed after enquiry {k}"
    # mixed into a batch with a grant: the grant's holds are not touched by the enquiry
    (g, e) = charge(ch, build_ccr("pgw.test", "s", U, 2, None, [{"rg": 10, "rsu": 0, "used": 0}]),
                    build_ccr("pgw.test", "e9", E, 0, B, [{"rg": 10, "rsu": MB}], action=action))
    after_grant = account(ch)
    (e2,) = charge(ch, build_ccr("pgw.test", "e10", E, 0, B, [{"rg": 10, "rsu": MB}], action=action))
    assert account(ch) == after_grant
    v = ch.view(B)
    assert all(b["reserved_octets"] >= 0 for b in v["buckets"]), v


def test_price_enquiry_on_an_exhausted_bundle_does_not_create_quota(tmp_path):
    """The reproduction: after it, CHECK_BALANCE said ENOUGH_CREDIT while a
    1 MB debit was refused, and a CCR-I got 1-2 octets."""
    ch = Charging(tmp_path / "data", RULES)
    charge(ch, build_ccr("pgw.test", "s", I, 0, B, [{"rg": 10, "rsu": 0}]))
    charge(ch, build_ccr("pgw.test", "s", U, 1, None, [{"rg": 10, "rsu": 0, "used": 400 * MB}]))
    for k in range(2):
        charge(ch, build_ccr("pgw.test", f"p{k}", E, 0, B, [{"rg": 10, "rsu": MB}], action=c.PRICE_ENQUIRY))
    v = ch.view(B)
    assert all(b["reserved_octets"] >= 0 for b in v["buckets"]), v
