"""Subscribers created, changed and deleted through the provisioning
operations (what the API runs on the charging loop), charged with real CCRs,
recovered from the journal alone (`crash`) and from a snapshot
(`restart`). Charges are computed by hand from the plans:

- cn-89-3g (rules/demo): 400 MB a month, then 0.0003 yuan per started KB.
- cm-1g-capped (rules/demo): 1 GB, then 0.0003 yuan per started KB.
- `PLANS` below: small plans of this test's own.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ocs.gy.operations import OperationError
from ocs.gy.provisioning import NewSubscriber, SubscriberChange, change_subscriber, create_subscriber, delete_subscriber
from ocs.rules.compile import RuleError
from ocs.subscriber import IMSI, subscriber_key
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr
from tests.support.server import DEMO_RULES

MB = 1 << 20
NEW = "8613700000001"
YUAN_PER_KB = Decimal("0.0003")


def _money(view: dict, key: str = "balance") -> Decimal:
    return Decimal(view[key])


def _demo(tmp_path) -> Charging:
    return Charging(tmp_path / "data", DEMO_RULES)


def _create(ocs: Charging, **fields):
    return ocs.run(create_subscriber, NewSubscriber(**{"msisdn": NEW, "plan": "cn-89-3g", **fields}))


def _refused(ocs: Charging, op, *args, **kwargs) -> OperationError:
    """The operation is refused and leaves no trace: no journal record, no
    row, no change to the directory."""
    before = (ocs.store.seq, ocs.store.n_subs, dict(ocs.store.explicit), dict(ocs.store.profiles),
              ocs.store.subs[:ocs.store.n_subs].copy())
    with pytest.raises(OperationError) as e:
        ocs.run(op, *args, **kwargs)
    after = (ocs.store.seq, ocs.store.n_subs, dict(ocs.store.explicit), dict(ocs.store.profiles),
             ocs.store.subs[:ocs.store.n_subs].copy())
    assert before[:4] == after[:4] and (before[4] == after[4]).all()
    return e.value


def _use(ocs: Charging, msisdn: str, sid: str, octets: int, rg: int = 1) -> None:
    """One session that is granted `octets` and reports them all."""
    got = ocs.units(sid, 1, 0, msisdn, [{"rg": rg, "rsu": octets}])[rg]
    assert got["result"] == 2001 and got["granted"] == octets, got
    assert ocs.ccr(sid, 3, 1, None, [{"rg": rg, "used": octets}]).result_code == 2001


# ---------------------------------------------------------------- create
def test_created_subscriber_is_charged_and_survives_crash_and_snapshot(tmp_path):
    ocs = _demo(tmp_path)
    done = _create(ocs, imsi="460009999000001", balance="100.00", timezone="Europe/Berlin",
                   customer_type="business")
    assert done.result["balance"] == "100.00" and done.result["provisioned"] == "api"
    assert done.result["imsi"] == "460009999000001" and done.result["timezone"] == "Europe/Berlin"
    _use(ocs, NEW, "s1", 500 * MB)
    # 400 MB from the bundle, 100 MB = 102,400 started KB at 0.0003
    expected = Decimal("100.00") - 100 * 1024 * YUAN_PER_KB
    assert expected == Decimal("69.28")
    # the period is the plan's month in the subscriber's timezone: it ends at midnight in Berlin
    berlin = datetime.now(ZoneInfo("Europe/Berlin"))
    first = (berlin.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for ocs in (ocs.crash(), ocs.restart(), ocs.crash()):
        view = ocs.view(NEW)
        assert _money(view) == expected and view["bundle"]["used_octets"] == 400 * MB
        assert (view["imsi"], view["timezone"], view["customer_type"]) == ("460009999000001", "Europe/Berlin", "business")
        assert datetime.fromisoformat(view["period"]["ends"]) == first
        assert ocs.store.lookup(subscriber_key(IMSI, "460009999000001")) == ocs.row(NEW)


def test_imsi_alone_identifies_the_subscriber(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, imsi="460009999000001", balance="1.00")
    frame = build_ccr("pgw.test", "s1", 1, 0, None, [{"rg": 1, "rsu": 0}], imsi="460009999000001").as_bytes()
    assert ocs.app.process([frame], time.time()).results == [2001]


@pytest.mark.parametrize("fields, status, words", [
    ({"msisdn": "8613800000001"}, 409, ["8613800000001 already exists", "subscribers.toml $.subscriber[0]"]),
    ({"msisdn": "8613900000042"}, 409, ["subscribers.toml $.subscriber_range[0] (8613900000000-8613900099999)"]),
    ({"plan": "cn-99"}, 422, ["no plan 'cn-99'", "cn-89-3g, cm-1g-capped"]),
    ({"balance": "ten"}, 422, ["balance: 'ten' is not an amount of money"]),
    ({"balance": "0.0000001"}, 422, ["more than 6 decimal places"]),
    ({"balance": "-5.00"}, 422, ["not negative"]),
    ({"balance": "Infinity"}, 422, ["'Infinity' is not an amount of money"]),
    ({"balance": "1e30"}, 422, ["too large"]),
    ({"timezone": "Mars/Olympus"}, 422, ["'Mars/Olympus' is not an IANA timezone"]),
    ({"balance": "1e999999"}, 422, ["'1e999999' is too large"]),
    ({"timezone": "a" * 300}, 422, ["(300 characters) is not an IANA timezone"]),
    ({"timezone": "Europe"}, 422, ["'Europe' is not an IANA timezone"]),
    ({"timezone": "Europe/../UTC"}, 422, ["is not an IANA timezone"]),
])
def test_create_refusals(tmp_path, fields, status, words):
    ocs = _demo(tmp_path)
    e = _refused(ocs, create_subscriber, NewSubscriber(**{"msisdn": NEW, "plan": "cn-89-3g", **fields}))
    assert e.status == status and all(w in e.message for w in words), e.message


def test_an_id_taken_by_the_api_is_refused(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, imsi="460009999000001")
    e = _refused(ocs, create_subscriber, NewSubscriber(msisdn=NEW, plan="cn-89-3g"))
    assert e.status == 409 and "provisioned through the API" in e.message
    e = _refused(ocs, create_subscriber, NewSubscriber(msisdn="8613700000002", plan="cn-89-3g",
                                                       imsi="460009999000001"))
    assert e.status == 409 and "imsi 460009999000001 already exists: subscriber 8613700000001" in e.message


def test_the_batch_lookup_sees_every_directory_change(tmp_path):
    """lookup_many keeps a sorted copy of the directory; provisioning
    between batches updates it in place."""
    ocs = _demo(tmp_path)
    numbers = ["8613700000005", "8613700000001", "8613700000009", "1"]
    for i, number in enumerate(numbers):
        ocs.run(create_subscriber, NewSubscriber(msisdn=number, plan="cn-89-3g", balance="1.00"))
        assert ocs.ccr(f"s{i}", 1, 0, number, [{"rg": 1, "rsu": 0}]).result_code == 2001
    ocs.run(delete_subscriber, "8613700000001", close_sessions=True)
    assert ocs.ccr("x1", 1, 0, "8613700000001", [{"rg": 1, "rsu": 0}]).result_code == 5030
    assert ocs.ccr("x2", 1, 0, "8613700000009", [{"rg": 1, "rsu": 0}]).result_code == 2001
    keys = np.array(sorted(ocs.store.explicit) + [subscriber_key(IMSI, "1")], dtype=np.int64)
    assert ocs.store.lookup_many(keys).tolist() == [ocs.store.lookup(int(k)) for k in keys]
    assert ocs.store._explicit_keys.tolist() == sorted(ocs.store.explicit)


# ---------------------------------------------------------------- change
def test_plan_change_mid_period_carries_the_bundle_by_name(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, balance="100.00")
    _use(ocs, NEW, "s1", 500 * MB)                  # 69.28 left (see above)
    done = ocs.run(change_subscriber, NEW, SubscriberChange(plan="cm-1g-capped"))
    assert done.reauth == [ocs.row(NEW)]
    view = done.result
    # what was taken from "bundle" stays taken from the new plan's "bundle";
    # the 100 MB paid for stays paid and counts toward the new plan's caps
    assert view["plan"] == "cm-1g-capped" and _money(view) == Decimal("69.28")
    assert view["bundle"] == {"total_octets": 1024 * MB, "used_octets": 400 * MB, "reserved_octets": 0,
                              "remaining_octets": 624 * MB}
    assert (_money(view, "charged_this_period"), view["charged_octets"]) == (Decimal("30.72"), 100 * MB)
    # 700 MB now: 624 MB from the bundle, 76 MB = 77,824 KB at 0.0003 = 23.3472
    # (on the old plan it would have cost 215.04, more than the balance)
    _use(ocs, NEW, "s2", 700 * MB)
    expected = Decimal("69.28") - 76 * 1024 * YUAN_PER_KB
    assert expected == Decimal("45.9328")
    for ocs in (ocs, ocs.crash(), ocs.restart()):
        view = ocs.view(NEW)
        assert view["plan"] == "cm-1g-capped" and _money(view) == expected
        assert view["bundle"]["used_octets"] == 1024 * MB
        assert _money(view, "charged_this_period") == Decimal("30.72") + Decimal("23.3472")
        assert view["total_octets_this_period"] == 1200 * MB


PLANS = """
[[plan]]
id = "a"
currency = "CNY"
timezone = "Asia/Shanghai"
bundle = "400 MB"
overage = { price = "0.0003", per = "1 KB" }
max_grant = "2 GB"

# "bundle" is the second bucket here: counters and holds move by name
[[plan]]
id = "b"
currency = "CNY"
timezone = "Asia/Shanghai"
bucket = [{ name = "video", volume = "1 GB", rating_groups = [200] }, { name = "bundle", volume = "1 GB" }]
overage = { price = "0.0003", per = "1 KB" }

[[plan]]
id = "q"
currency = "CNY"
timezone = "Asia/Shanghai"
period = "quarter"
bundle = "400 MB"
overage = { price = "0.0003", per = "1 KB" }

[[plan]]
id = "usd"
currency = "USD"
timezone = "Asia/Shanghai"
bundle = "1 GB"
"""


def _own_rules(tmp_path, text: str = PLANS, name: str = "rules") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "plans.toml").write_text(text)
    return d


def test_plan_change_moves_open_holds_with_their_bucket(tmp_path):
    ocs = Charging(tmp_path / "data", _own_rules(tmp_path))
    ocs.run(create_subscriber, NewSubscriber(msisdn=NEW, plan="a", balance="10.00"))
    row = ocs.row(NEW)
    assert ocs.units("s1", 1, 0, NEW, [{"rg": 1, "rsu": 100 * MB}])[1]["granted"] == 100 * MB
    assert ocs.store.subs[row]["b_res"].tolist() == [100 * MB, 0, 0, 0]
    ocs.run(change_subscriber, NEW, SubscriberChange(plan="b"))
    assert ocs.store.subs[row]["b_res"].tolist() == [0, 100 * MB, 0, 0]
    ocs = ocs.crash()           # the session's moved holds were journaled with the change
    assert ocs.store.subs[row]["b_res"].tolist() == [0, 100 * MB, 0, 0]
    assert ocs.ccr("s1", 3, 1, None, [{"rg": 1, "used": 60 * MB}]).result_code == 2001
    s = ocs.store.subs[row]
    assert s["b_res"].tolist() == [0, 0, 0, 0] and s["b_used"].tolist() == [0, 60 * MB, 0, 0]
    assert (int(s["res_money"]), int(s["balance"])) == (0, 10_000_000)     # all from the bundle


def test_a_plan_with_other_periods_starts_a_fresh_period(tmp_path):
    ocs = Charging(tmp_path / "data", _own_rules(tmp_path))
    ocs.run(create_subscriber, NewSubscriber(msisdn=NEW, plan="a", balance="100.00"))
    _use(ocs, NEW, "s1", 500 * MB)
    view = ocs.run(change_subscriber, NEW, SubscriberChange(plan="q")).result
    # a quarter is not a month: nothing of the month's counters carries over; the money stays spent
    assert _money(view) == Decimal("69.28")
    assert view["bundle"]["used_octets"] == 0 and _money(view, "charged_this_period") == 0
    _use(ocs, NEW, "s2", 300 * MB)
    view = ocs.crash().view(NEW)
    assert view["bundle"]["used_octets"] == 300 * MB and _money(view) == Decimal("69.28")


def test_change_refusals(tmp_path):
    ocs = Charging(tmp_path / "data", _own_rules(tmp_path))
    ocs.run(create_subscriber, NewSubscriber(msisdn=NEW, plan="a", balance="1.00"))
    ocs.run(create_subscriber, NewSubscriber(msisdn="8613700000002", plan="a", imsi="460001"))
    e = _refused(ocs, change_subscriber, NEW, SubscriberChange(plan="usd"))
    assert e.status == 409 and "is in USD, the subscriber's balance in CNY" in e.message
    e = _refused(ocs, change_subscriber, NEW, SubscriberChange(plan="nope"))
    assert e.status == 422 and "the plans are: a, b, q, usd" in e.message
    e = _refused(ocs, change_subscriber, NEW, SubscriberChange(imsi="460001"))
    assert e.status == 409 and "subscriber 8613700000002" in e.message
    e = _refused(ocs, change_subscriber, "8613799999999", SubscriberChange(active=False))
    assert e.status == 404


def test_identities_timezone_and_attributes_change(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, imsi="460009999000001", partner="mvno-a")
    old_imsi, new_imsi = subscriber_key(IMSI, "460009999000001"), subscriber_key(IMSI, "460009999000002")
    view = ocs.run(change_subscriber, NEW, SubscriberChange(imsi="460009999000002", timezone="America/New_York",
                                                            partner=None)).result
    assert (view["imsi"], view["timezone"], "partner" in view) == ("460009999000002", "America/New_York", False)
    for ocs in (ocs, ocs.crash(), ocs.restart()):
        assert ocs.store.lookup(old_imsi) == -1 and ocs.store.lookup(new_imsi) == ocs.row(NEW)
        assert ocs.view(NEW)["timezone"] == "America/New_York"
        assert int(ocs.store.subs[ocs.row(NEW)]["partner"]) == 0


def test_a_timezone_the_database_lost_falls_back_to_the_plans(tmp_path, monkeypatch, caplog):
    """An API subscriber's timezone was checked when it was set; if the
    timezone database no longer has it at a later start, the start goes on
    with the plan's timezone for it (logged), rather than failing."""
    from zoneinfo import ZoneInfoNotFoundError
    from ocs.rules import units
    ocs = _demo(tmp_path)
    _create(ocs, timezone="America/Argentina/Ushuaia")
    real = units.ZoneInfo

    def without_ushuaia(name):
        if name == "America/Argentina/Ushuaia":
            raise ZoneInfoNotFoundError(name)
        return real(name)
    monkeypatch.setattr(units, "ZoneInfo", without_ushuaia)
    with caplog.at_level("ERROR", logger="ocs.store"):
        ocs = ocs.crash()
    assert int(ocs.store.subs[ocs.row(NEW)]["zone"]) == -1
    assert "'America/Argentina/Ushuaia'" in caplog.text and "plan's timezone applies" in caplog.text
    assert ocs.ccr("tz1", 1, 0, NEW, [{"rg": 1, "rsu": 0}]).result_code == 2001


def test_rule_file_subscribers_change_in_the_rule_files(tmp_path):
    ocs = _demo(tmp_path)
    e = _refused(ocs, change_subscriber, "8613800000001", SubscriberChange(plan="cm-1g-capped"))
    assert e.status == 409 and "8613800000001 is declared in subscribers.toml $.subscriber[0]: change plan there" \
        in e.message
    e = _refused(ocs, change_subscriber, "8613900000042", SubscriberChange(timezone="UTC"))
    assert e.status == 409 and "belongs to subscribers.toml $.subscriber_range[0]" in e.message
    e = _refused(ocs, delete_subscriber, "8613800000001")
    assert e.status == 409 and "remove it there" in e.message
    # `active` is not in the rule files: it may change here, and stays through crash and reload
    ocs.run(change_subscriber, "8613800000001", SubscriberChange(active=False))
    assert ocs.ccr("r1", 1, 0, "8613800000001", [{"rg": 1, "rsu": 0}]).result_code == 5030
    ocs = ocs.crash()
    assert ocs.ccr("r2", 1, 0, "8613800000001", [{"rg": 1, "rsu": 0}]).result_code == 5030
    ocs.run(change_subscriber, "8613800000001", SubscriberChange(active=True))
    assert ocs.ccr("r3", 1, 0, "8613800000001", [{"rg": 1, "rsu": 0}]).result_code == 2001


# ---------------------------------------------------------------- delete
def test_delete_refuses_open_sessions_unless_told_to_close_them(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, balance="100.00", imsi="460009999000001")
    assert ocs.units("pgw.test;s1", 1, 0, NEW, [{"rg": 1, "rsu": 500 * MB}])[1]["granted"] == 500 * MB
    e = _refused(ocs, delete_subscriber, NEW)
    assert e.status == 409 and "1 open session(s) (pgw.test;s1)" in e.message
    row = ocs.row(NEW)
    done = ocs.run(delete_subscriber, NEW, close_sessions=True)
    # the reservation (100 MB of overage, 30.72 held) is released, nothing debited
    assert done.result == {"subscriber": NEW, "deleted": True, "plan": "cn-89-3g", "balance": "100.00",
                           "currency": "CNY", "closed_sessions": ["pgw.test;s1"]}
    for ocs in (ocs, ocs.crash(), ocs.restart()):
        assert ocs.row(NEW) == -1 and ocs.store.lookup(subscriber_key(IMSI, "460009999000001")) == -1
        assert ocs.ccr("again", 1, 0, NEW, [{"rg": 1, "rsu": 0}]).result_code == 5030
        assert ocs.ccr("pgw.test;s1", 2, 1, None, [{"rg": 1, "rsu": 0, "used": MB}]).result_code == 5002
        assert row in ocs.store.retired and row not in ocs.store.profiles
    # the number is free again: a new subscriber, a new row
    _create(ocs, balance="5.00")
    assert ocs.row(NEW) not in (-1, row) and ocs.crash().view(NEW)["balance"] == "5.00"


# ---------------------------------------------------------------- rules versions
def _demo_copy(tmp_path, name: str, edit=None, extra: str | None = None) -> Path:
    d = tmp_path / name
    shutil.copytree(DEMO_RULES, d)
    if edit is not None:
        path = d / edit[0]
        path.write_text(edit[1](path.read_text()))
    if extra is not None:
        (d / "extra.toml").write_text(extra)
    return d


def test_a_new_rules_version_keeps_api_subscribers(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, balance="100.00", timezone="Europe/Berlin")
    _use(ocs, NEW, "s1", 450 * MB)      # 50 MB = 51,200 KB over: 15.36 -> 84.64
    # a plan inserted first moves every plan's index; the 89-yuan bundle grows to 500 MB
    text = lambda t: '[[plan]]\nid = "first"\ntimezone = "UTC"\nbundle = "1 MB"\n\n' + \
        t.replace('bundle = "400 MB"\noverage = { price = "0.0003", per = "1 KB", rounding = "per-started-unit" }',
                  'bundle = "500 MB"\noverage = { price = "0.0003", per = "1 KB", rounding = "per-started-unit" }')
    ocs.reload(_demo_copy(tmp_path, "v2", ("plans.toml", text)))
    assert ocs.rules.plan_index["cn-89-3g"] == 1
    for ocs in (ocs, ocs.crash(), ocs.restart()):
        view = ocs.view(NEW)
        assert (view["plan"], view["provisioned"], view["timezone"]) == ("cn-89-3g", "api", "Europe/Berlin")
        assert _money(view) == Decimal("84.64")
        assert view["bundle"] == {"total_octets": 500 * MB, "used_octets": 400 * MB, "reserved_octets": 0,
                                  "remaining_octets": 100 * MB}


def test_a_version_dropping_an_api_subscribers_plan_is_refused(tmp_path):
    ocs = _demo(tmp_path)
    ocs.run(create_subscriber, NewSubscriber(msisdn=NEW, plan="vz-share-250mb"))
    drop = lambda t: t.replace('id = "vz-share-250mb"', 'id = "vz-share-250mb-old"')
    v2 = _demo_copy(tmp_path, "v2", ("verizon.toml", drop))
    version = ocs.rules.version
    with pytest.raises(RuleError) as e:
        ocs.reload(v2)
    assert "plan 'vz-share-250mb' is removed, but 1 subscribers are on it" in str(e.value)
    assert ocs.store.rules_version == version and ocs.view(NEW)["plan"] == "vz-share-250mb"
    # once it is deleted, its kept row holds nothing back
    ocs.run(delete_subscriber, NEW)
    ocs.reload(v2)
    ocs = ocs.crash()
    assert ocs.store.rules_version == ocs.rules.version and ocs.row(NEW) == -1


def test_rules_that_declare_an_api_number_adopt_it(tmp_path):
    ocs = _demo(tmp_path)
    _create(ocs, balance="100.00")
    _use(ocs, NEW, "s1", 500 * MB)
    adopt = f'[[subscriber]]\nmsisdn = "{NEW}"\nplan = "cm-1g-capped"\nbalance = "5.00"\n'
    ocs.reload(_demo_copy(tmp_path, "v2", extra=adopt))
    for ocs in (ocs, ocs.crash()):
        view = ocs.view(NEW)
        # the files decide the plan from now on; the balance and the period's use stay the store's
        assert (view["provisioned"], view["plan"], _money(view)) == ("rules", "cm-1g-capped", Decimal("69.28"))
        assert view["bundle"]["used_octets"] == 400 * MB
    e = _refused(ocs, change_subscriber, NEW, SubscriberChange(plan="cn-89-3g"))
    assert "is declared in extra.toml $.subscriber[0]" in e.message


@pytest.mark.parametrize("extra, words", [
    ('[[subscriber]]\nmsisdn = "8613711111111"\nimsi = "460009999000001"\nplan = "cn-89-3g"\n',
     "extra.toml $.subscriber[0]: 460009999000001 belongs to subscriber 8613700000001"),
    ('[[subscriber_range]]\nfirst = "8613700000000"\nlast = "8613700000099"\nplan = "cn-89-3g"\n',
     "extra.toml $.subscriber_range[0] (8613700000000-8613700000099): the range covers 8613700000001"),
])
def test_rules_that_take_an_api_subscribers_identity_are_refused(tmp_path, extra, words):
    ocs = _demo(tmp_path)
    _create(ocs, imsi="460009999000001", balance="1.00")
    version, n = ocs.rules.version, ocs.store.n_subs
    with pytest.raises(RuleError) as e:
        ocs.reload(_demo_copy(tmp_path, "v2", extra=extra))
    assert words in str(e.value), str(e.value)
    assert (ocs.store.rules_version, ocs.store.n_subs, ocs.view(NEW)["provisioned"]) == (version, n, "api")


def test_account_operations_queued_behind_a_deletion_are_refused(tmp_path):
    """The API resolves the row, then queues the operation; a deletion queued
    before it runs first. The top-up, pack or reopen must not land on the
    deleted row (review finding)."""
    from ocs.gy.operations import buy_pack, reopen, top_up
    ocs = _demo(tmp_path)
    _create(ocs, balance="10.00")
    row = ocs.row(NEW)
    ocs.run(delete_subscriber, NEW)
    for op, args in ((top_up, (row, "50.00")), (buy_pack, (row, "cn-addon-1g")), (reopen, (row,))):
        e = _refused(ocs, op, *args)
        assert e.status == 404 and "deleted" in e.message, (op.__name__, e.message)


def test_a_top_up_cannot_overflow_the_balance(tmp_path):
    from ocs.gy.operations import top_up
    from ocs.rules.units import MONEY_LIMIT
    ocs = _demo(tmp_path)
    _create(ocs, balance="10.00")
    row = ocs.row(NEW)
    big = "4000000000000"            # 4e12 yuan = 4e18 micro-units: two of them pass 2**62
    ocs.run(top_up, row, big)
    e = _refused(ocs, top_up, row, big)
    assert e.status == 409 and "exceed" in e.message
    assert 0 < int(ocs.store.subs[row]["balance"]) < MONEY_LIMIT
