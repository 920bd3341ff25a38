"""``strata origin`` as a real process on the session's bundle and Valkey: recommend, a new item recommended
cold, an explanation, a clear 4xx, a clean stop on SIGTERM; a bad reasoner flag exits 2 with one line."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest

from strata.deploy.local import ManagedProcess, free_port, strata_command

BODY = {"user_id": "u-e2e", "session_id": "s-e2e", "k": 8}


@pytest.fixture(scope="module")
def origin_url(registry_dir, session_store, tmp_path_factory):
    session_store.start()
    port = free_port()
    argv = [*strata_command(), "origin", "--registry", str(registry_dir), "--port", str(port),
            "--store", session_store.url, "--reasoner", "template", "--log-level", "WARNING"]
    # a loaded CI machine can miss the 20 ms default store deadline; this test is about the contract
    env = {**os.environ, "STRATA_ORIGIN__STORE__TIMEOUT_MS": "500"}
    proc = ManagedProcess("origin", argv, ready_url=f"http://127.0.0.1:{port}/readyz", env=env,
                          log_path=tmp_path_factory.mktemp("origin-log") / "origin.log")
    proc.start(timeout_s=90)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        rc = proc.stop()
        assert rc in (0, -signal.SIGTERM), f"origin exited with {rc}; output:\n{proc.output_tail()}"


def test_origin_process_serves_recommend_items_and_explain(origin_url) -> None:
    with httpx.Client(base_url=origin_url, timeout=10.0) as http:
        d = http.post("/v1/recommend", json=BODY).json()
        assert d["tier"] == "origin" and len(d["items"]) == 8 and d["degraded"] is False
        item = {"item_id": "E2E-NEW-1", "title": "Quokka kombucha", "category": "beverages", "price": 4.5,
                "stock": 10, "age_restricted": False}
        assert http.post("/v1/items", json={"items": [item]}).json()["upserted"] == 1
        cold = http.post("/v1/recommend", json={**BODY, "query": "quokka kombucha"}).json()
        assert cold["items"][0]["item_id"] == "E2E-NEW-1"
        ex = http.post("/v1/explain", json={**BODY, "item_ids": ["E2E-NEW-1"], "query": "kombucha"}).json()
        assert ex["reasoner"] == "template"
        assert ex["items"] == [{"item_id": "E2E-NEW-1",
                                "reason": "Quokka kombucha (beverages, 4.50): it matches your search (kombucha)."}]
        bad = http.post("/v1/recommend", json={**BODY, "k": 500})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "k"


def test_bad_reasoner_flag_exits_2_with_one_line(registry_dir) -> None:
    out = subprocess.run([*strata_command(), "origin", "--registry", str(registry_dir), "--reasoner", "gpt"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "strata origin: bad config: reasoner must be 'template' or an http(s):// vLLM URL, got 'gpt'")
