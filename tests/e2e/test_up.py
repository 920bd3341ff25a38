"""``strata up`` as a user runs it: every process ready, the endpoints file, a killed stream processor
restarted by the supervisor (and working again), a bounded ``strata simulate`` run, and Ctrl-C leaving no
process and no open port. One ``strata up`` serves the module; the Ctrl-C test runs last and stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from strata.deploy.local import port_open, strata_command
from strata.shared.keys import session_key
from tests.support.up_process import Up, alive, children, running_up, wait_for

pytestmark = pytest.mark.slow

ENDPOINT_KEYS = ["edge", "streaming", "origin", "store", "broker"]


@pytest.fixture(scope="module")
def up(full_registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(full_registry_dir, tmp_path_factory.mktemp("up")) as running:
        yield running


def test_endpoints_file_names_every_endpoint_and_each_answers(up: Up) -> None:
    e = up.endpoints
    assert list(e) == ENDPOINT_KEYS
    for name in ("edge", "streaming", "origin"):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", e[name]), e
        assert httpx.get(f"{e[name]}/readyz", timeout=5).status_code == 200, name
    ready = httpx.get(f"{e['origin']}/readyz", timeout=5).json()
    assert ready["text_encoder"] and ready["models"]["retrieval"] and ready["models"]["ranker"], ready
    assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", e["store"]), e
    assert redis.Redis.from_url(e["store"]).ping()
    host, port = e["broker"].split(":")
    assert host == "127.0.0.1" and port_open(host, int(port))
    printed = up.output()
    for name in ("edge", "streaming", "origin", "store", "broker"):
        assert re.search(rf"^{name}: +{re.escape(e[name])}$", printed, re.M), (name, printed)
    for name in ("valkey", "broker", "streaming", "processor", "origin", "edge"):   # a log per process
        assert (up.run_dir / f"{name}.log").is_file(), name


def test_a_killed_processor_is_restarted_and_processes_again(up: Up) -> None:
    procs = children(up.proc.pid)
    old = [pid for pid, cmd in procs.items() if "streaming process" in cmd]
    assert len(old) == 1, procs
    os.kill(old[0], signal.SIGKILL)
    log = up.run_dir / "supervisor.log"
    wait_for(lambda: log.exists() and "processor restarted" in log.read_text(), 60, "no restart logged", up)
    text = log.read_text()
    assert re.search(rf"processor \(pid {old[0]}\) exited with code -9 .* restarting in [\d.]+s", text), text
    new = [pid for pid, cmd in children(up.proc.pid).items() if "streaming process" in cmd]
    assert len(new) == 1 and new[0] != old[0] and alive(new[0])
    # the new processor consumes: a click becomes the session's vector in the store
    e = up.endpoints
    session = f"restart-{uuid.uuid4().hex[:8]}"
    item = httpx.post(f"{e['edge']}/v1/recommend", json={"user_id": "u-restart", "session_id": session, "k": 3},
                      timeout=5).json()["items"][0]["item_id"]
    event = {"event_id": uuid.uuid4().hex, "type": "click", "user_id": "u-restart", "session_id": session,
             "ts": int(time.time() * 1000), "channel": "web", "item_id": item}
    assert httpx.post(f"{e['streaming']}/v1/events", json=event, timeout=5).status_code == 202
    store = redis.Redis.from_url(e["store"])
    wait_for(lambda: store.hget(session_key("default", session), "vec") is not None, 60,
             "the restarted processor wrote no session vector", up)


def test_simulate_bounded_run_through_the_running_system(up: Up, full_registry_dir: Path, tmp_path: Path) -> None:
    """``strata simulate`` against this ``strata up`` (no router-off edge here: the edge policy and the probe
    are skipped and say so); the JSON has exactly the contract's keys."""
    e = up.endpoints
    out_json, out_png = tmp_path / "sim.json", tmp_path / "sim.png"
    argv = [*strata_command(), "simulate", "--edge", e["edge"], "--events", e["streaming"], "--origin", e["origin"],
            "--registry", str(full_registry_dir), "--users", "3", "--duration", "8", "--think", "0.2",
            "--seed", "3", "--json", str(out_json), "--plot", str(out_png)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "policy edge skipped" in proc.stdout
    report = json.loads(out_json.read_text())
    assert set(report) == {"policies", "frontier", "t_edge", "seed", "users", "duration_s"}
    assert (report["seed"], report["users"], report["duration_s"]) == (3, 3, 8.0)
    assert list(report["policies"]) == ["routed", "streaming", "origin", "popular", "random"]
    keys = {"expected_ctr", "realized_ctr", "ndcg_at_10", "regret", "p50_ms", "p95_ms", "p99_ms", "tier_share",
            "degraded_share", "requests", "edge_cache_hit_ratio", "learning_curve"}
    for name, m in report["policies"].items():
        assert set(m) == keys, name
        assert set(m["tier_share"]) == {"edge", "streaming", "origin"}
        assert m["requests"] > 0 and 0 <= m["expected_ctr"] <= 1 and 0 <= m["ndcg_at_10"] <= 1, (name, m)
    pol = report["policies"]
    assert pol["streaming"]["tier_share"]["streaming"] == 1.0 and pol["origin"]["tier_share"]["origin"] == 1.0
    assert pol["routed"]["edge_cache_hit_ratio"] is not None and pol["origin"]["edge_cache_hit_ratio"] is None
    assert pol["origin"]["p50_ms"] > 0 and pol["popular"]["p50_ms"] is None
    assert pol["origin"]["expected_ctr"] > pol["random"]["expected_ctr"]      # the truth tells them apart
    assert report["frontier"] == []                                            # no probe without --edge-only
    assert out_png.stat().st_size > 10_000


def test_ctrl_c_stops_every_process_and_leaves_nothing(up: Up) -> None:
    descendants = set(children(up.proc.pid))
    for pid in list(descendants):
        descendants |= set(children(pid))
    assert len(descendants) >= 6
    ports = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in up.endpoints.values()]
    os.killpg(up.proc.pid, signal.SIGINT)          # what a terminal's Ctrl-C sends (the foreground group)
    assert up.proc.wait(timeout=60) == 0, up.output()
    assert "stopped; every process strata up started has been stopped" in up.output()
    wait_for(lambda: not any(alive(p) for p in descendants), 10, "processes left after Ctrl-C", up)
    assert not any(port_open("127.0.0.1", p) for p in ports), ports
    assert not up.endpoints_file.exists()


def test_config_with_external_engines_starts_only_stratas_processes(full_registry_dir: Path, session_store, tansu_proc,
                                                                    tmp_path: Path) -> None:
    """``--config`` naming a Redis and a Kafka broker that already run: no valkey-server or tansu is started, every
    tier uses them, and the endpoints file says so."""
    session_store.start()
    config = tmp_path / "strata.yaml"
    config.write_text(f"""
edge:
  store: {{url: "{session_store.url}"}}
  impressions: {{broker: "{tansu_proc.bootstrap}"}}
streaming:
  store: "{session_store.url}"
  broker: "{tansu_proc.bootstrap}"
  group: "up-external-{uuid.uuid4().hex[:6]}"
origin:
  store: {{url: "{session_store.url}"}}
""")
    endpoints_file = tmp_path / "endpoints.json"
    argv = [*strata_command(), "up", "--registry", str(full_registry_dir), "--port", "0", "--config", str(config),
            "--endpoints-file", str(endpoints_file)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "200"}, start_new_session=True)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_for(lambda: endpoints_file.exists() or proc.poll() is not None, 180, "no endpoints file")
        assert proc.poll() is None, "".join(out)
        e = json.loads(endpoints_file.read_text())
        assert (e["store"], e["broker"]) == (session_store.url, tansu_proc.bootstrap)
        started = " ".join(children(proc.pid).values())
        assert "valkey-server" not in started and "tansu" not in started, started
        assert started.count("--config") == 4, started          # edge, origin, streaming serve and process
        ready = httpx.get(f"{e['origin']}/readyz", timeout=5).json()
        assert ready["store"] == "redis", ready
        session = f"ext-{uuid.uuid4().hex[:8]}"
        event = {"event_id": uuid.uuid4().hex, "type": "click", "user_id": "u-ext", "session_id": session,
                 "ts": int(time.time() * 1000), "channel": "web", "item_id": "SKU-000001"}
        assert httpx.post(f"{e['streaming']}/v1/events", json=event, timeout=5).status_code == 202
        store = session_store.client()
        wait_for(lambda: store.hget(session_key("default", session), "vec") is not None, 60,
                 "the processor on the external broker wrote no session vector to the external store")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(out)
    assert session_store.running and port_open("127.0.0.1", tansu_proc.port)     # the external engines are not ours
