"""The compiled usage-record formatter against the plain reference
(tests/naive_usage.py), over any rows: amounts of any sign and size,
Session-Ids of any octets, labels, currencies and sponsors."""
from __future__ import annotations

from types import SimpleNamespace

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.feeds.usage import UsageRecord
from ocs.feeds.usage_lines import Subscribers, usage_lines
from ocs.gy.app import USAGE
from ocs.feeds.usage import UsageRecord
from ocs.feeds.usage_lines import Subscribers, usage_lines, usage_record
from tests import naive_usage

I64 = st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-3, 10**7), st.sampled_from([0, 10**6, -10**6, 1, 999_999]))
CURRENCIES = ["CNY", "JPY", "KRW", "USD", "XAU"]     # XAU: not in the table, two digits as default
LABELS = st.one_of(st.from_regex(r"[0-9]{1,15}", fullmatch=True), st.text(max_size=12))
SIDS = st.one_of(st.from_regex(r"[a-z0-9.;]{1,40}", fullmatch=True).map(str.encode), st.binary(max_size=24))


@st.composite
def batches(draw):
    n_plans = draw(st.integers(1, 4))
    plans = [SimpleNamespace(currency=draw(st.sampled_from(CURRENCIES))) for _ in range(n_plans)]
    sponsors = [SimpleNamespace(id=f"sponsor-{k}", currency=draw(st.sampled_from(CURRENCIES)))
                for k in range(draw(st.integers(0, 3)))]
    subs = draw(st.lists(st.tuples(LABELS, st.integers(-1, n_plans)), min_size=1, max_size=5))
    n = draw(st.integers(1, 12))
    rows = np.zeros(n, USAGE)
    for i in range(n):
        rows[i]["sub"] = draw(st.integers(0, len(subs) - 1))
        for name in ("rg", "service_id", "used", "used_time", "from_bundle", "charged", "sponsored",
                     "sponsor_charged"):
            rows[i][name] = draw(I64)
        rows[i]["sponsor"] = draw(st.integers(-1, len(sponsors)))
    rec = usage_record(draw(st.integers(1, 2**40)), draw(st.floats(0, 4e9)), "ace82cb0113d", rows.tobytes(),
                       [draw(SIDS) for _ in range(n)])
    rules = SimpleNamespace(plans=plans, sponsors=sponsors)
    return rec, rules, (lambda row: subs[row][0]), (lambda row: subs[row][1])


@settings(max_examples=300, deadline=None)
@given(batches())
def test_the_kernel_writes_what_the_reference_writes(batch):
    rec, rules, label, plan_of = batch
    got = usage_lines(rec, rules, Subscribers(label, plan_of))
    assert got == naive_usage.usage_lines(rec, rules, label, plan_of)
    for line in got.splitlines():
        msgspec.json.decode(line, type=UsageRecord)       # each line valid JSON of the documented fields


def test_a_subscriber_keeps_its_entry_until_the_rules_change():
    rows = np.zeros(2, USAGE)
    rows["sub"], rows["charged"], rows["sponsor"] = [0, 0], [1_500_000, 3], -1
    rules = SimpleNamespace(plans=[SimpleNamespace(currency="JPY"), SimpleNamespace(currency="USD")], sponsors=[])
    plan = [0]
    subscribers = Subscribers(lambda row: "8613800000001", lambda row: plan[0])
    rec = usage_record(7, 0.0, "v1", rows.tobytes(), [b"a", b"b"])
    assert b'"charged":"1.5","charged_micro":1500000,"currency":"JPY"' in usage_lines(rec, rules, subscribers)
    plan[0] = 1                                  # the same rules: the row's entry is kept
    assert b'"currency":"JPY"' in usage_lines(rec, rules, subscribers)
    rec = msgspec.structs.replace(rec, rules="v2")      # a new version may have moved the row
    assert b'"charged":"0.000003","charged_micro":3,"currency":"USD"' in usage_lines(rec, rules, subscribers)


def test_no_usage_no_lines():
    rules = SimpleNamespace(plans=[], sponsors=[])
    assert usage_lines(usage_record(1, 0.0, "v", b"", []), rules, Subscribers(str, int)) == b""
