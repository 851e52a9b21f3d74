"""deploy/grafana/ocs-dashboard.json: an importable Grafana dashboard whose
every query is PromQL that Prometheus's own parser (promtool) accepts, and
which shows what the issue asks for. (That the queries also evaluate, and
read only metrics a running server exports, is tested against a real server
and a real Prometheus in tests/integration/test_prometheus.py.)"""
from __future__ import annotations

import json
import re
import subprocess

from tests.deploy.promql import DASHBOARD, dashboard_exprs, dashboard_panels, metric_names
from tests.support.debian import program

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_query_parses(tmp_path):
    """promtool cannot check a bare expression, so each query becomes a
    recording rule of a rules file (JSON is YAML) that `promtool check
    rules` parses."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20, len(exprs)
    for where, expr in exprs:
        assert "$" not in expr, f"{where}: a Grafana variable the test does not substitute: {expr}"
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules, indent=1))
    out = subprocess.run([program("promtool", "prometheus"), "check", "rules", str(path)],
                         capture_output=True, text=True, timeout=60)
    said = out.stdout + out.stderr
    if out.returncode != 0:
        # name the panel of the query promtool refused
        m = re.search(r"group \"dashboard\", rule (\d+)", said)
        where = exprs[int(m.group(1)) - 1] if m else ""
        raise AssertionError(f"promtool check rules refused a dashboard query {where}:\n{said}")
    assert f"SUCCESS: {len(exprs)} rules found" in said, said


def test_it_imports_with_a_datasource_input():
    d = load()
    assert 36 <= d["schemaVersion"] <= 39
    assert d["uid"] and d["title"] and d["id"] is None
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    instance = {v["name"]: v for v in d["templating"]["list"]}["instance"]
    assert instance["datasource"] == DATASOURCE and "ocs_" in instance["definition"]
    for p in dashboard_panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == DATASOURCE, f"panel {p['title']!r}: {p['datasource']}"
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, f"panel {p['title']!r} target {t['refId']}"


def test_panels_have_unique_ids_and_do_not_overlap():
    panels = dashboard_panels(load())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['title']!r} is wider than the grid: {g}"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"panels {taken[(x, y)]!r} and {p['title']!r} overlap at {(x, y)}"
                taken[(x, y)] = p["title"]
        if p["type"] != "row":
            assert p["targets"] and p.get("description"), f"panel {p['title']!r}: queries and a description"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), f"panel {p['title']!r}: refIds {refs}"


def test_it_shows_what_operators_watch():
    """Throughput, latency, grants, denials, caps, re-authorizations, the
    journal, batches, peers, sessions, reservations, the rules version and
    the process, each on the metric that measures it."""
    by_metric: dict[str, list[str]] = {}
    for where, expr in dashboard_exprs():
        for name in metric_names(expr):
            by_metric.setdefault(name, []).append(where)
    wanted = {"ocs_requests_total", "ocs_request_duration_seconds_bucket", "ocs_grants_total", "ocs_denials_total",
              "ocs_cap_events_total", "ocs_reauth_requests_total", "ocs_journal_write_seconds_bucket",
              "ocs_batch_size_bucket", "ocs_peers", "ocs_open_sessions", "ocs_reservations", "ocs_rules_info",
              "process_resident_memory_bytes", "process_cpu_seconds_total", "up"}
    assert wanted - set(by_metric) == set(), f"no panel reads {sorted(wanted - set(by_metric))}"
    exprs = "\n".join(e for _, e in dashboard_exprs())
    for q in ("0.5", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(ocs_request_duration_seconds_bucket" in exprs
    assert "sum by (request_type, result_code) (rate(ocs_requests_total" in exprs
    assert "sum by (rating_group, result_code) (rate(ocs_denials_total" in exprs
    assert "sum by (state) (ocs_peers" in exprs
