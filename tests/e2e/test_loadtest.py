"""``strata loadtest`` as an SRE runs it: a 20 s run against a self-started ``strata up`` passes the default SLO
file (its per-tier table matching the tiers' own /metrics), an impossible SLO file exits 1 naming the breached
line, a wrong body is a failure, a stopped origin shows as degraded share, bad usage and an unreachable host
exit 2. Bounded: Locust runs 3-20 s each; one ``strata up`` serves the tests that need a running system."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from strata.deploy.local import free_port, port_open, strata_command
from strata.loadtest.gate import stop_group
from tests.support.up_process import children

pytestmark = pytest.mark.slow


def loadtest(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*strata_command(), "loadtest", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "COLUMNS": "220"})


# -- runs first: no strata up of this module is running yet (the fixture below starts lazily) ----------------

def test_a_20s_loadtest_against_strata_up_passes_the_default_slos(full_registry_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = loadtest("--run-time", "20s", "--registry", str(full_registry_dir), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "starting strata up" in r.stdout and "strata up stopped" in r.stdout
    for name in ("report.html", "locust_stats.csv", "locust_stats_history.csv", "latency.png", "slo.json",
                 "report.json"):
        assert (out / name).stat().st_size > 0, name
    verdicts = json.loads((out / "slo.json").read_text())
    assert verdicts and all(set(v) >= {"name", "limit", "measured", "pass"} for v in verdicts)
    assert all(v["pass"] for v in verdicts), [v for v in verdicts if not v["pass"]]
    report = json.loads((out / "report.json").read_text())
    tiers = {(row["endpoint"], row["tier"]) for row in report["per_tier"]}
    assert {("recommend", "edge"), ("recommend", "streaming"), ("recommend", "origin"), ("explain", "origin"),
            ("events", "streaming")} <= tiers
    for row in report["per_tier"]:          # Locust's counts agree with each tier's own /metrics
        assert row["match"] is True, row
    assert report["locust"]["requests"] > 1000 and report["locust"]["failures"] == 0
    assert 0 < report["locust"]["cpu_share"] < 2 and report["locust"]["processes"] == 1
    # one line per SLO in the printed table, and strata up is gone: its edge port is closed
    for v in verdicts:
        assert v["name"] in r.stdout
    edge_port = int(report["hosts"]["edge"].rsplit(":", 1)[1])
    assert not port_open("127.0.0.1", edge_port)


# -- the module's strata up ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def up(full_registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("lt-up")
    endpoints = tmp / "endpoints.json"
    proc = subprocess.Popen([*strata_command(), "up", "--registry", str(full_registry_dir), "--port", "0",
                             "--endpoints-file", str(endpoints), "--run-dir", str(tmp / "run")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not endpoints.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "strata up did not start"
            time.sleep(0.2)
        yield {"file": endpoints, "pid": proc.pid, **json.loads(endpoints.read_text())}
    finally:
        stop_group(proc)


def test_an_impossible_slo_file_exits_1_and_names_the_breached_line(up: dict, full_registry_dir: Path,
                                                                     tmp_path: Path) -> None:
    slo = tmp_path / "gate.yaml"
    slo.write_text("slos:\n"
                   "  - {name: edge answers, endpoint: recommend, tier: edge, max_error_ratio: 0.5}\n"
                   "  - {name: impossible edge p50, endpoint: recommend, tier: edge, p50_ms: 0.001}\n")
    out = tmp_path / "report"
    r = loadtest("--endpoints-file", str(up["file"]), "--run-time", "5s", "--users", "4", "--slo", str(slo),
                 "--registry", str(full_registry_dir), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr
    assert re.search(r"BREACH gate\.yaml:3: impossible edge p50: recommend edge: p50_ms <= 0\.001, measured", r.stdout), \
        r.stdout[-3000:]
    verdicts = {v["name"]: v for v in json.loads((out / "slo.json").read_text())}
    assert verdicts["impossible edge p50"]["pass"] is False and verdicts["impossible edge p50"]["line"] == 3
    assert verdicts["impossible edge p50"]["measured"] >= 0
    assert verdicts["edge answers"]["pass"] is True


class _WrongBody(BaseHTTPRequestHandler):
    """An "edge" that answers every recommend 200 with a body of the right shape but an unknown tier."""

    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._send(200 if self.path == "/healthz" else 404, b"{}")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = {"items": [{"item_id": f"SKU-{i:06d}", "score": 0.1} for i in range(30)][:10], "tier": "cdn",
                "degraded": False, "route_reasons": [], "request_id": "r", "impression_id": "i"}
        self._send(200, json.dumps(body).encode())

    def log_message(self, *args) -> None:
        pass


def test_the_content_checks_fail_on_a_wrong_body(full_registry_dir: Path, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongBody)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        slo = tmp_path / "gate.yaml"
        slo.write_text("slos:\n  - {name: edge errors, endpoint: recommend, max_error_ratio: 0.01}\n")
        out = tmp_path / "report"
        r = loadtest("--host", f"http://127.0.0.1:{server.server_address[1]}", "--run-time", "1s", "--users", "2",
                     "--slo", str(slo), "--registry", str(full_registry_dir), "--out", str(out), cwd=tmp_path)
    finally:
        server.shutdown()
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["locust"]["requests"] > 0 and report["locust"]["failures"] == report["locust"]["requests"]
    (v,) = json.loads((out / "slo.json").read_text())
    assert v["measured"] == 1.0 and v["pass"] is False
    assert "tier 'cdn' not in" in (out / "locust_failures.csv").read_text()


def test_a_stopped_origin_shows_as_degraded_share(up: dict, full_registry_dir: Path, tmp_path: Path) -> None:
    """The edge's router escalates to the origin within a deadline and answers degraded when it misses it."""
    if "strata_router_requests_total" not in httpx.get(f"{up['edge']}/metrics", timeout=5).text:
        pytest.skip("pending: the edge's router (issue 17) does not escalate yet, so a stopped origin cannot "
                    "degrade an edge answer")
    origin = [pid for pid, cmd in children(up["pid"]).items() if re.search(r"strata\S* origin ", cmd)]
    assert len(origin) == 1, children(up["pid"])

    def degraded_share(out: Path) -> float:
        r = loadtest("--host", up["edge"], "--run-time", "8s", "--users", "6", "--registry", str(full_registry_dir),
                     "--out", str(out), cwd=tmp_path)
        assert r.returncode in (0, 1), r.stderr
        rows = [x for x in json.loads((out / "report.json").read_text())["per_tier"] if x["endpoint"] == "recommend"]
        return sum(x["client_degraded"] for x in rows) / sum(x["client_requests"] for x in rows)

    before = degraded_share(tmp_path / "running")
    os.kill(origin[0], signal.SIGSTOP)
    try:
        stopped = degraded_share(tmp_path / "stopped")
    finally:
        os.kill(origin[0], signal.SIGCONT)
    assert stopped > max(0.05, 2 * before), (before, stopped)


def test_bad_usage_and_an_unreachable_host_exit_2(tmp_path: Path) -> None:
    port = free_port()
    r = loadtest("--host", f"http://127.0.0.1:{port}", "--run-time", "2s", cwd=tmp_path)
    assert r.returncode == 2 and "unreachable" in r.stderr and f"127.0.0.1:{port}" in r.stderr, r.stderr
    r = loadtest("--host", "http://127.0.0.1:1", "--endpoints-file", "e.json", cwd=tmp_path)
    assert r.returncode == 2 and "not both" in r.stderr, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos:\n  - {name: two limits, p99_ms: 5, p95_ms: 3}\n")
    r = loadtest("--host", "http://127.0.0.1:1", "--slo", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "slos[0] (two limits)" in r.stderr and "exactly one limit" in r.stderr, r.stderr
    r = loadtest("--host", "http://127.0.0.1:1", "--run-time", "soon", cwd=tmp_path)
    assert r.returncode == 2 and "run-time" in r.stderr, r.stderr
    r = loadtest("--users", "x", cwd=tmp_path)
    assert r.returncode == 2
    r = loadtest("--endpoints-file", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert r.returncode == 2 and "missing.json" in r.stderr, r.stderr
