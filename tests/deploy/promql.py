"""The PromQL of deploy/: the dashboard's expressions with Grafana's
variables given values Prometheus accepts, the alert rules' expressions,
and the metric names they read."""
from __future__ import annotations

import json
import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "ocs-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# what Grafana puts in place of the variables the dashboard uses
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


def dashboard_panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard query, variables substituted."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for p in dashboard_panels(dashboard):
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((f"panel {p['id']} {p['title']!r} target {t['refId']}", expr))
    return out


def alert_exprs() -> list[tuple[str, str]]:
    """(alert name, PromQL) of every alert rule. The file is YAML, read here
    without a YAML library: each rule is `- alert: NAME` then `expr:` as one
    line or a `|` block."""
    out = []
    lines = ALERTS.read_text().splitlines()
    name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*- alert: (\w+)$", line)
        if m:
            name = m.group(1)
        m = re.match(r"(\s*)expr: (.*)$", line)
        if m:
            if m.group(2).strip() == "|":
                indent, block = None, []
                while i + 1 < len(lines):
                    nxt = lines[i + 1]
                    here = len(nxt) - len(nxt.lstrip())
                    if nxt.strip() and here <= len(m.group(1)):
                        break
                    indent = here if indent is None and nxt.strip() else indent
                    block.append(nxt)
                    i += 1
                out.append((name, "\n".join(b[indent:] for b in block).strip()))
            else:
                out.append((name, m.group(2).strip()))
        i += 1
    return out


_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*+)(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "or", "and", "unless", "group_left", "group_right", "bool",
             "offset"}


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: every identifier that is not
    a function (followed by a parenthesis), a keyword, a label in a matcher,
    a grouping list or a range."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    return {n for n in _IDENT.findall(expr) if n not in _KEYWORDS}


def family(name: str) -> str:
    """The metric family a series name belongs to, as prometheus-client names it."""
    for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
