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
    # values that made the compiler raise something other than a RuleError
    # (decimal.Overflow, OSError from ZoneInfo, OverflowError from numpy)
    (GOOD_PLAN + '[[subscriber]]\nmsisdn = "8613800000001"\nplan = "p"\nbalance = "1e999999"\n',
     "$.subscriber[0].balance", "'1e999999' is too large an amount"),
    ('[[plan]]\nid = "p"\noverage = { price = "-1E+999999", per = "1 KB" }\n', "$.plan[0].overage",
     "too large an amount"),
    ('[[plan]]\nid = "p"\nbundle = "99999999999999999999999 GB"\n', "$.plan[0].bundle", "too large a volume"),
    ('[[plan]]\nid = "p"\nbundle = 99999999999999999999999\n', "$.plan[0].bundle", "too large"),
    ('[[plan]]\nid = "p"\ntimezone = "' + "a" * 300 + '"\n', "$.plan[0].timezone",
     "unknown timezone 'aaaa"),
    ('[[plan]]\nid = "p"\ntimezone = "Europe"\n', "$.plan[0].timezone", "unknown timezone 'Europe'"),
    ('[[plan]]\nid = "p"\ntimezone = "Europe/../UTC"\n', "$.plan[0].timezone", "unknown timezone"),
    (GOOD_PLAN + '[[subscriber]]\nmsisdn = "8613800000001"\nplan = "p"\ntimezone = "' + "b" * 300 + '"\n',
     "$.subscriber[0].timezone", "unknown timezone 'bbbb"),
    ('[[sponsor]]\nid = "s"\nname = "S"\ncurrency = "CNY"\ntimezone = "' + "c" * 300 + '"\nperiod = "month"\n'
     'budget = { money = "10" }\nprice = "0.0001"\nper = "1 KB"\nrating_groups = [300]\n', "$.sponsor[0].timezone",
     "unknown timezone 'cccc"),
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


@pytest.mark.parametrize("text, what", [
    ("1e999999", "too large an amount"), ("-1e999999", "too large an amount"),
    ("1e-999999", "more than 6 decimal places"), ("4611686018427.387904", "too large an amount"),
    ("1.0000000000000000000000000000001", "more than 6 decimal places"), ("sNaN", "not an amount of money"),
    ("x" * 100_000, "(100000 characters) is not an amount of money"),
])
def test_money_out_of_range_is_a_value_error(text, what):
    """ValueError, the one exception every caller turns into a refusal (a
    decimal.Overflow escaped them all); the message quotes a long value cut."""
    with pytest.raises(ValueError) as e:
        parse_money(text)
    assert what in str(e.value) and len(str(e.value)) < 200


def test_money_at_the_bounds_is_exact():
    assert parse_money("4611686018427.387903") == (1 << 62) - 1
    assert parse_money("1.000000000") == 1_000_000 and parse_money("0e999999") == 0


@pytest.mark.parametrize("name", ["a" * 300, "Europe", "Europe/../UTC", "/etc/localtime", "", "UTC\0", "Mars/Olympus"])
def test_a_timezone_that_is_not_one_is_a_value_error(name):
    from ocs.rules.units import timezone_info
    with pytest.raises(ValueError, match="unknown timezone"):
        timezone_info(name)


def test_an_unexpected_error_compiling_a_version_refuses_it(tmp_path, monkeypatch, caplog):
    """Whatever escapes the compiler, the watch refuses that version with the
    exception logged, and the version in force keeps serving."""
    from ocs.rules import watch as W
    (tmp_path / "plans.toml").write_text(GOOD_PLAN)
    w = W.RulesWatch(tmp_path, "0123456789ab")

    def broken(directory, files=None):
        raise ZeroDivisionError("a bug in the compiler")
    monkeypatch.setattr(W, "load_rules", broken)
    with caplog.at_level("ERROR", logger="ocs.rules"):
        assert w.check(forced=True) is None
    assert "ZeroDivisionError: a bug in the compiler" in caplog.text and "keeps serving" in caplog.text
    assert any(r.exc_info for r in caplog.records), "the traceback is logged"
    assert w.version == "0123456789ab"
