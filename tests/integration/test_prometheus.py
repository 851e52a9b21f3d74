"""A real Prometheus (Debian package prometheus) scrapes a real `ocs serve`.

PromQL over Prometheus's HTTP API returns exactly the CCRs we sent, by
request type and result code; Prometheus loads deploy/prometheus/alerts.yml
and evaluates every rule without error; every query of the Grafana
dashboard evaluates; and every metric the dashboard and the alerts read is
one the server exports."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.promql import ALERTS, alert_exprs, dashboard_exprs, family, metric_names
from tests.support.debian import program
from tests.support.gy import TOKEN
from tests.support.rawclient import GyConnection, build_ccr
from tests.support.server import OcsProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def query(base: str, promql: str) -> dict:
    """Prometheus's answer to an instant query (status, data or error)."""
    try:
        return http_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    except urllib.error.HTTPError as e:          # 400/422: the error is in the body
        return json.loads(e.read())


class PrometheusProcess:
    """/usr/bin/prometheus scraping `target` every second, storage in `workdir`."""

    def __init__(self, workdir: Path, target: str):
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps({            # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "ocs", "static_configs": [{"targets": [target]}]}],
        }, indent=1))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [program("prometheus", "prometheus"), f"--config.file={self.config}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus was not ready within 20 s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()


async def send_ccrs(conn: GyConnection) -> Counter:
    """Some CCRs of each kind; (request_type, Result-Code) -> how many were answered so."""
    answered: Counter = Counter()

    async def ccr(sid, rtype, number, msisdn, mscc):
        a = await conn.request(build_ccr(conn.origin_host, sid, rtype, number, msisdn, [mscc]))
        assert a is not None, f"no answer to {sid}"
        answered[({1: "INITIAL", 2: "UPDATE", 3: "TERMINATE"}[rtype], str(a.result_code))] += 1

    for k in range(6):
        await ccr(f"prom;{k}", 1, 0, f"86139000001{k:02d}", {"rg": 1, "rsu": 0})
    for k in range(2):
        await ccr(f"prom;{k}", 2, 1, None, {"rg": 1, "rsu": 0, "used": 1000})
    await ccr("prom;0", 3, 2, None, {"rg": 1, "used": 500})
    for k in range(3):          # a subscriber nobody provisioned
        await ccr(f"unknown;{k}", 1, 0, "8613999999999", {"rg": 1, "rsu": 0})
    assert answered[("INITIAL", "2001")] == 6 and answered[("INITIAL", "5030")] == 3, answered
    return answered


def scraped_families(api: str) -> tuple[set[str], set[str]]:
    """The metric families the server exports, and those of them with
    samples (a family with none yet, e.g. a labelled counter nothing has
    incremented, still has its TYPE line)."""
    with urllib.request.urlopen(api + "/metrics", timeout=10) as r:
        text = r.read().decode()
    families = list(text_string_to_metric_families(text))
    return {f.name for f in families}, {f.name for f in families if f.samples}


def wait_for(what: str, check, timeout: float):
    """check() until it returns something true; fail with its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        ok, last = check()
        if ok:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last: {last}")
        time.sleep(0.25)


def by_labels(answer: dict, *labels: str) -> dict:
    assert answer["status"] == "success", answer
    return {tuple(r["metric"].get(k) for k in labels): float(r["value"][1]) for r in answer["data"]["result"]}


def check_in_prometheus(prom: PrometheusProcess, answered: Counter, exported: set[str], sampled: set[str]) -> None:
    total = sum(answered.values())

    def request_count():
        answer = query(prom.base, "sum(ocs_requests_total)")
        values = [float(r["value"][1]) for r in answer["data"]["result"]] if answer["status"] == "success" else answer
        return values == [total], values
    # the count we sent, once Prometheus has scraped after our last answer
    wait_for(f"sum(ocs_requests_total) == {total}, the CCRs we sent", request_count, timeout=15)
    by_kind = by_labels(query(prom.base, 'sum by (request_type, result_code) (ocs_requests_total{command="CCR"})'),
                        "request_type", "result_code")
    assert by_kind == {k: float(v) for k, v in answered.items()}
    assert by_labels(query(prom.base, 'up{job="ocs"}'), "job") == {("ocs",): 1.0}

    # the alert rules: loaded, and every one evaluated without error
    def rules_evaluated():
        groups = http_json(prom.base + "/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return (rules and all(r["health"] == "ok" for r in rules),
                [(r["name"], r["health"], r.get("lastError")) for r in rules])
    rules = wait_for("alert rules evaluated", rules_evaluated, timeout=10)
    assert sorted(name for name, _, _ in rules) == sorted(name for name, _ in alert_exprs())

    # every dashboard query evaluates on real data, and shows some where the
    # server has samples of every metric it reads (rates need two scrapes)
    def dashboard_data():
        failed, empty = [], []
        for where, expr in dashboard_exprs():
            a = query(prom.base, expr)
            if a["status"] != "success":
                failed.append((where, expr, a.get("error")))
            elif not a["data"]["result"] and all(family(n) in sampled or n == "up" for n in metric_names(expr)):
                empty.append((where, expr))
        assert not failed, f"dashboard queries Prometheus refused: {failed}"
        return not empty, empty
    wait_for("every dashboard query over sampled metrics has data", dashboard_data, timeout=10)

    # every metric the dashboard and the alerts read is exported (up is Prometheus's own)
    used = {n for _, e in dashboard_exprs() + alert_exprs() for n in metric_names(e)} - {"up"}
    missing = sorted(n for n in used if family(n) not in exported)
    assert not missing, f"the dashboard or the alerts read metrics the server does not export: {missing}"


async def test_prometheus_scrapes_the_server_and_counts_our_requests(tmp_path):
    server = OcsProcess(tmp_path / "data", extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})
    prom = None
    await trio.to_thread.run_sync(server.start)
    try:
        assert server.api, "the server did not say where its API listens"
        prom = PrometheusProcess(tmp_path, server.api.removeprefix("http://"))
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-prometheus.test.example")
                await conn.connect(server.port, n)
                answered = await send_ccrs(conn)
                await trio.to_thread.run_sync(prom.start)
                exported, sampled = await trio.to_thread.run_sync(scraped_families, server.api)
                await trio.to_thread.run_sync(check_in_prometheus, prom, answered, exported, sampled)
                n.cancel_scope.cancel()
    except BaseException:
        if prom is not None:
            print(f"--- prometheus log\n{prom.output()}")
        raise
    finally:
        if prom is not None:
            await trio.to_thread.run_sync(prom.stop)
        await trio.to_thread.run_sync(server.stop)
