"""deploy/prometheus/: promtool (Debian package prometheus) accepts the
scrape configuration and the alert rules, and the rules' unit tests pass:
each alert fires on its synthetic trouble and stays quiet otherwise."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ocs.config import load_config, split_hostport
from tests.deploy.promql import ALERTS, alert_exprs
from tests.support.debian import program

PROMETHEUS_DIR = ALERTS.parent


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    out = subprocess.run([program("promtool", "prometheus"), *args], capture_output=True, text=True,
                         cwd=cwd, timeout=120)
    said = out.stdout + out.stderr
    assert out.returncode == 0, f"promtool {' '.join(args)} (exit {out.returncode}):\n{said}"
    return said


def test_promtool_checks_the_scrape_configuration():
    said = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in said, said      # alerts.yml is found and loaded with it


def test_promtool_checks_the_alert_rules():
    said = promtool("check", "rules", "--lint=all", "--lint-fatal", "alerts.yml")
    assert f"SUCCESS: {len(alert_exprs())} rules found" in said, said


def test_the_alert_rules_pass_their_unit_tests():
    said = promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in said, said


def test_every_alert_is_shown_firing_and_quiet():
    """alerts_test.yml holds, for every alert, a case where it fires and one
    where it is quiet (an `exp_alerts: []`)."""
    firing, quiet = set(), set()
    name = None
    for line in (PROMETHEUS_DIR / "alerts_test.yml").read_text().splitlines():
        m = re.match(r"\s*alertname: (\w+)", line)
        if m:
            name = m.group(1)
        m = re.match(r"\s*exp_alerts:(.*)$", line)
        if m:
            (quiet if m.group(1).strip() == "[]" else firing).add(name)
    alerts = {name for name, _ in alert_exprs()}
    assert len(alerts) >= 8, alerts
    assert alerts - firing == set(), f"alerts never shown firing: {sorted(alerts - firing)}"
    assert alerts - quiet == set(), f"alerts never shown quiet: {sorted(alerts - quiet)}"


def test_the_alerts_cover_the_operator_surface():
    """The alerts watch what the issue asks for, on the metric names the
    server exports."""
    exprs = dict(alert_exprs())
    assert exprs["OcsDown"] == 'up{job="ocs"} == 0'
    assert 'result_code!="2001"' in exprs["OcsHighErrorRatio"]
    assert 'result_code=~"5..."' in exprs["OcsPermanentFailureSurge"]
    assert "histogram_quantile(0.99" in exprs["OcsHighLatency"]
    assert "ocs_request_duration_seconds_bucket" in exprs["OcsHighLatency"]
    assert "ocs_journal_write_seconds_bucket" in exprs["OcsJournalWriteSlow"]
    assert 'ocs_peers{state="OPEN"}' in exprs["OcsNoOpenPeers"]
    assert "ocs_batch_size_bucket" in exprs["OcsChargingLoopSaturated"]
    assert "process_resident_memory_bytes" in exprs["OcsMemoryHigh"]


def test_prometheus_scrapes_the_metrics_address_of_the_example_configuration():
    cfg = load_config(ALERTS.parents[1] / "ocs.toml")
    assert cfg.metrics, "deploy/ocs.toml gives Prometheus a metrics-only address"
    port = split_hostport(cfg.metrics)[1]
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    targets = re.findall(r"^\s*- ([\w.-]+):(\d+)\s*$", text, re.M)
    assert targets and all(int(p) == port for _, p in targets), f"targets {targets}, metrics port {port}"
    assert re.search(r"^\s*- job_name: ocs$", text, re.M), "the alerts select job=\"ocs\""
