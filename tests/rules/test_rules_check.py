"""`ocs rules check DIR`: the demo rules pass; broken rule files are refused
with the file, the key and what was expected."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocs.rules.compile import RuleError, load_rules
from ocs.rules.units import format_money, parse_money, parse_volume

ROOT = Path(__file__).resolve().parents[2]
GOOD_PLAN = '''
[[plan]]
id = "p"
bundle = "1 MB"
overage = { price = "0.0003", per = "1 KB" }
'''


def check(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocs.cli", "rules", "check", str(directory)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_demo_rules_pass():
    out = check(ROOT / "rules" / "demo")
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout and "100000 subscribers" in out.stdout


@pytest.mark.parametrize("text, where, what", [
    ('[[plan]]\nid = "p"\nbundel = "1 MB"\n', "$.plan[0]", "bundel"),
    ('[[plan]]\nid = "p"\nbundle = "1 MiB"\n', "$.plan[0].bundle", "not a volume"),
    ('[[plan]]\nid = "p"\noverage = { price = 0.0003 }\n', "$.plan[0].overage.price", "Expected `str`"),
    ('[[plan]]\nid = "p"\noverage = { price = "0.00000001" }\n', "$.plan[0].overage", "more than 6 decimal"),
    ('[[plan]]\nid = "p"\ntimezone = "Mars/Olympus"\n', "$.plan[0].timezone", "unknown timezone"),
    (GOOD_PLAN + '[[subscriber]]\nmsisdn = "8613800000001"\nplan = "q"\n', "$.subscriber[0].plan", "no plan 'q'"),
    (GOOD_PLAN + '[[subscriber]]\nmsisdn = "86-138"\nplan = "p"\n', "$.subscriber[0].msisdn", "Expected `str` matching"),
    (GOOD_PLAN + GOOD_PLAN, "$.plan[1].id", "defined twice"),
    ('[[plan]\nid = "p"\n', "TOML syntax", "line 1"),
])
def test_broken_rules_are_refused_naming_file_and_key(tmp_path, text, where, what):
    (tmp_path / "good.toml").write_text(GOOD_PLAN.replace('"p"', '"other"'))
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    out = check(tmp_path)
    assert out.returncode == 2
    line = next((l for l in out.stderr.splitlines() if where in l), None)
    assert line is not None, out.stderr
    assert str(bad) in line, out.stderr
    assert what in line, out.stderr


def test_every_error_of_a_directory_is_reported(tmp_path):
    (tmp_path / "a.toml").write_text('[[plan]]\nid = "a"\nbundle = "x"\n')
    (tmp_path / "b.toml").write_text('[[plan]]\nid = "b"\ntimezone = "Nowhere"\n')
    with pytest.raises(RuleError) as e:
        load_rules(tmp_path)
    assert len(e.value.errors) == 2


def test_empty_directory(tmp_path):
    out = check(tmp_path)
    assert out.returncode == 2 and "no *.toml rule files" in out.stderr


@pytest.mark.parametrize("text, octets", [("400 MB", 400 * 1024 * 1024), ("1 KB", 1024), ("0", 0),
                                          ("1.5 KB", 1536), ("100 GB", 100 * 1024 ** 3), (7, 7)])
def test_volumes_are_binary(text, octets):
    assert parse_volume(text) == octets


@pytest.mark.parametrize("text, micro, shown", [("100.00", 100_000_000, "100.00"), ("0.0003", 300, "0.0003"),
                                                ("69.28", 69_280_000, "69.28"), ("2625", 2_625_000_000, "2625")])
def test_money_is_exact(text, micro, shown):
    assert parse_money(text) == micro
    currency = "JPY" if text == "2625" else "CNY"
    assert format_money(micro, currency) == shown
