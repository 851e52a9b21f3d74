"""Quota-Holding-Time and Volume-Quota-Threshold (TS 32.299 7.2.148,
7.2.221) go with each grant as the plan's `quota` entries say, on both
encoders (the compiled one and the full one a relayed request takes), and
only with a grant. Numbers by hand: an empty Requested-Service-Unit is
granted the plan's default_grant, 10 MB = 10485760 octets; 20% of it is
2097152."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from diameter.message import Message
from diameter.message.avp.grouped import ProxyInfo

from ocs.diameter import constants as c
from ocs.rules.compile import RuleError, load_rules
from tests.support.charging import Charging
from tests.support.rawclient import build_ccr

DEMO = Path(__file__).parents[2] / "rules" / "demo"
I = c.INITIAL_REQUEST
B = "8613800000001"          # cn-89-3g
MB = 1 << 20
QUOTA = ('quota = [{ rating_groups = [10], holding_time = 300, threshold = "20%" },\n'
         '         { threshold = "2 MB" }]\n')


def rules_with(tmp_path, quota_line: str) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(DEMO, d)
    plans = d / "plans.toml"
    text = plans.read_text()
    anchor = 'id = "cn-89-3g"\n'
    assert anchor in text
    plans.write_text(text.replace(anchor, anchor + quota_line, 1))
    return d


def grants(ch, relayed: bool):
    req = build_ccr("pgw.test", f"s-{relayed}", I, 0, B, [{"rg": 10, "rsu": 0}, {"rg": 20, "rsu": 0}])
    if relayed:
        req.proxy_info = [ProxyInfo(proxy_host=b"dra1.example", proxy_state=b"\x01")]
    got = ch.app.process([req.as_bytes()], time.time())
    ch.store.write(got.record)
    a = Message.from_bytes(got.answers[0])
    assert a.result_code == 2001
    return {m.rating_group: m for m in a.multiple_services_credit_control}


@pytest.mark.parametrize("relayed", [False, True], ids=["compiled", "full"])
def test_grants_carry_the_plans_quota_options(tmp_path, relayed):
    ch = Charging(tmp_path / "data", rules_with(tmp_path, QUOTA))
    by_rg = grants(ch, relayed)
    assert by_rg[10].granted_service_unit.cc_total_octets == 10 * MB
    assert by_rg[10].quota_holding_time == 300
    assert by_rg[10].volume_quota_threshold == 2 * MB          # 20% of 10 MB
    assert by_rg[20].quota_holding_time is None
    assert by_rg[20].volume_quota_threshold == 2 * MB          # the plan's other rating groups


def test_without_quota_entries_nothing_is_sent(tmp_path):
    ch = Charging(tmp_path / "data", DEMO)
    for m in grants(ch, relayed=False).values():
        assert m.quota_holding_time is None and m.volume_quota_threshold is None


def test_a_threshold_not_below_the_grant_is_not_sent(tmp_path):
    """rg 20 asks for 1 MB: a 2 MB threshold would make the gateway ask
    again at once; rg 10's 20% of 1 MB is 209715 octets (rounded down)."""
    ch = Charging(tmp_path / "data", rules_with(tmp_path, QUOTA))
    req = build_ccr("pgw.test", "s", I, 0, B, [{"rg": 10, "rsu": MB}, {"rg": 20, "rsu": MB}])
    got = ch.app.process([req.as_bytes()], time.time())
    by_rg = {m.rating_group: m for m in Message.from_bytes(got.answers[0]).multiple_services_credit_control}
    assert by_rg[20].granted_service_unit.cc_total_octets == MB
    assert by_rg[20].volume_quota_threshold is None
    assert by_rg[10].volume_quota_threshold == MB * 20 // 100


@pytest.mark.parametrize("line, what", [
    ('quota = [{ threshold = "100%" }]\n', "from 1% to 99%"),
    ('quota = [{ threshold = "2 MiB" }]\n', "a volume"),
    ('quota = [{ holding_time = 0 }]\n', "holding_time"),
])
def test_bad_quota_entries_are_refused_by_key(tmp_path, line, what):
    with pytest.raises(RuleError) as e:
        load_rules(rules_with(tmp_path, line))
    assert "quota" in str(e.value) and what in str(e.value)
