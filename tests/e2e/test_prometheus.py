"""A real Prometheus (Debian's binary) scrapes a running ``strata up`` under a short Locust load, with Strata's
rules at every window divided by 100 (``rules.render(scale=100)``: 1 h -> 36 s, 5 m -> 3 s): every recording rule
and every dashboard query returns data (the ones that cannot here are named, with why), and a stopped stream
processor makes the freshness SLO's page fire.

Needs the ``prometheus`` binary: skipped with a banner outside CI without it, a failure in CI (``CI`` set).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console

from strata.deploy.local import free_port, strata_command
from strata.deploy.observability import dashboard, rules, scrape
from strata.deploy.up import Stack, write_endpoints
from strata.loadtest.gate import stop_group
from strata.loadtest.slo import load_slos
from tests.unit.test_observability import PENDING, require_binary

pytestmark = pytest.mark.slow
SCALE = 100
# Series that cannot have data on this stack, and why (each must be empty: when it is not, drop it from here).
NO_DATA_HERE = {
    "strata:llm_fallback:share_rate5m": "strata up runs the template reasoner: no LLM, no fallback series",
}


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert body.get("status") == "success", (expr, body)
        return body["data"]["result"]

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]


@pytest.fixture(scope="module")
def stack(full_registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run = tmp_path_factory.mktemp("prom-up")
    s = Stack(full_registry_dir, run, console=Console(file=io.StringIO()))
    with s:
        yield s


@pytest.fixture(scope="module")
def prom(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    binary = require_binary("prometheus", "the end-to-end Prometheus test is")
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "rules.yaml").write_text(rules.render(load_slos(rules.PRODUCTION_FILE), scale=SCALE))
    targets = {name: [scrape.host_port(stack.url(name))] for name in ("edge", "streaming", "origin", "processor")}
    cfg = scrape.config(targets, interval="1s", rule_files=[str(tmp / "rules.yaml")], timeout="800ms")
    (tmp / "prometheus.yaml").write_text(scrape.render(cfg))
    port = free_port()
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yaml'}", f"--storage.tsdb.path={tmp / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready"
            time.sleep(0.2)
        yield Prom(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s}s")
        time.sleep(1)


def _recorded() -> list[str]:
    groups = yaml.safe_load(rules.RULES_FILE.read_text())["groups"]
    return sorted({r["record"] for g in groups for r in g["rules"] if "record" in r})


def _freshness_page(p: Prom) -> list[dict]:
    return [a for a in p.alerts() if a["labels"].get("alertname") == "StrataSLOBurnFast"
            and a["labels"].get("slo") == "freshness" and a["state"] == "firing"]


def test_rules_and_dashboard_return_data_and_a_stopped_processor_fires_the_freshness_page(
        stack: Stack, prom: Prom, full_registry_dir: Path, tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.json"
    write_endpoints(endpoints, stack.endpoints)
    load = subprocess.Popen([*strata_command(), "loadtest", "--endpoints-file", str(endpoints), "--run-time", "90s",
                             "--users", "10", "--registry", str(full_registry_dir), "--out", str(tmp_path / "lt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    processor = stack.services["processor"].pid
    stopped = False
    try:
        # every target up, then enough load for the short windows
        _wait(lambda: len([r for r in prom.query('up{job=~"strata-.*"} == 1')]) == 4, 30, "4 targets up")
        _wait(lambda: prom.query("strata:requests:rate5m > 0") and prom.query("strata:events_accepted:rate5m > 0"),
              60, "load visible in Prometheus")
        time.sleep(8)
        empty = [name for name in _recorded() if not prom.query(name)]
        assert sorted(empty) == sorted(n for n in NO_DATA_HERE if n in _recorded()), \
            f"recording rules without data: {empty}"
        board = json.loads(dashboard.DASHBOARD_FILE.read_text())
        alerts_query = board["annotations"]["list"][0]["expr"]
        no_data = [q for q in dashboard.queries(board) if q != alerts_query and not prom.query(q)]
        assert sorted(no_data) == sorted(q for q in NO_DATA_HERE if q in dashboard.queries(board)), \
            f"dashboard queries without data: {no_data}"
        for reason in NO_DATA_HERE.values():
            if reason.startswith("pending: "):
                assert reason.split()[1] in PENDING
        # the burn rates are computed for every SLO, and the freshness page is not firing while it processes
        slos = {r["metric"]["slo"] for r in prom.query("slo:sli_error:ratio_rate5m")}
        assert "freshness" in slos and "edge-recommend-p99" in slos, slos
        assert not _freshness_page(prom)
        # a stopped processor: the ingest keeps accepting, nothing reaches the store
        os.kill(processor, signal.SIGSTOP)
        stopped = True
        t0 = time.monotonic()
        fired = _wait(lambda: _freshness_page(prom), 120, "StrataSLOBurnFast{slo=freshness} firing")
        took = time.monotonic() - t0
        assert fired[0]["labels"]["severity"] == "page"
        assert prom.query('slo:sli_error:ratio_rate5m{slo="freshness"} > 0.9'), "the short window reads ~1"
        assert prom.query(alerts_query), "the dashboard's alert annotation query sees the firing page"
        targets_down = prom.query('up{job="strata-processor"} == 0')
        assert targets_down, "the stopped processor is seen as down"
        print(f"\nfreshness page fired {took:.0f} s after the processor stopped (windows / {SCALE})")
    finally:
        if stopped:
            os.kill(processor, signal.SIGCONT)
        stop_group(load)


def test_prometheus_api_reads_the_scaled_rules(prom: Prom) -> None:
    groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"StrataSLOBurnFast", "StrataSLOBurnSlow", "slo:sli_error:ratio_rate1h"} <= names
    assert all(r.get("health") == "ok" for g in groups for r in g["rules"]), [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r.get("health") != "ok"]
