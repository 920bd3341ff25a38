"""The recovery rules of issue 9, each on real engines (Valkey, Qdrant Edge, real sockets):
profile read fails -> cached profile (< 1 h), degraded; retrieval fails -> popular items; ranker fails ->
retrieval order; LLM down, late or over budget -> template reasoner; the guardrail stage fails -> 503 with
the reason, never unchecked items; a retry only inside the deadline."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient

from strata.deploy.local import free_port
from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.origin.reasoner.budget import TokenBudget
from strata.origin.reasoner.vllm import VllmReasoner
from strata.origin.retrieval import FIELDS
from strata.shared.config import load_settings
from strata.shared.keys import profile_key, session_key
from strata.shared.models.vector_index import EdgeVectorIndex
from strata.shared.ranking.features import EMBED_DIM

BODY = {"user_id": "u1", "session_id": "s1", "k": 10}


@pytest.fixture(scope="module")
def origin(registry_dir, session_store) -> Iterator[tuple[TestClient, OriginNode]]:
    session_store.start()
    settings = load_settings(origin={"registry": str(registry_dir),
                                     "store": {"url": session_store.url, "timeout_ms": 100.0}})
    node = OriginNode(settings)
    with TestClient(build_app(node)) as client:
        yield client, node


def _stage(node: OriginNode, name: str):
    return next(s for s in node.explain.pipeline.stages if s.name == name)


@contextmanager
def swapped(obj, attr: str, value) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


def _dairy_item(node: OriginNode) -> str:
    c = node.state.catalog
    return next(i for i, cat in zip(c.item_ids, c.categories, strict=False) if cat == "dairy")


def test_profile_read_fails_cached_profile_served_degraded(origin, session_store) -> None:
    client, node = origin
    session_store.start()
    r = session_store.client()
    try:
        r.flushall()
        vec = np.full(EMBED_DIM, 1.0 / np.sqrt(EMBED_DIM), dtype="<f4")
        r.hset(session_key("default", "s1"), mapping={"vec": vec.tobytes(), "updated_ms": 1})
        r.hset(profile_key("default", "u1"), mapping={"recent_categories": '["dairy"]'})
    finally:
        r.close()
    item = _dairy_item(node)
    body = {**BODY, "item_ids": [item]}
    fresh = client.post("/v1/explain", json=body).json()
    assert fresh["degraded"] is False
    assert fresh["items"][0]["reason"].endswith("you recently browsed dairy.")
    top = client.post("/v1/recommend", json={**BODY, "k": 100}).json()["items"]
    assert any("ann_source" in it["sources"] for it in top)     # the session vector drove the ANN
    session_store.stop()
    try:
        stale = client.post("/v1/explain", json=body).json()
        assert stale["degraded"] is True and stale["route_reasons"] == ["profile_stale"]
        assert stale["items"] == fresh["items"]          # the cached profile still explains
        unknown = client.post("/v1/explain", json={**body, "user_id": "u2", "session_id": "s2"}).json()
        assert unknown["degraded"] is True and unknown["route_reasons"] == ["profile_unavailable"]
        assert not unknown["items"][0]["reason"].endswith("you recently browsed dairy.")
        rec = client.post("/v1/recommend", json=BODY)
        assert rec.status_code == 200 and len(rec.json()["items"]) == 10
    finally:
        session_store.start()


def test_profile_read_retries_once_inside_the_deadline(session_store) -> None:
    import asyncio

    from strata.origin.profiles import ProfileSource, RedisProfileStore

    async def go(timeout_s: float) -> tuple[int, bool]:
        store = RedisProfileStore(session_store.url, timeout_s)
        source = ProfileSource(store, timeout_s)
        try:
            p = await source.get("default", "u9", "s9")
        finally:
            await store.close()
        return source.retries, p.degraded

    session_store.stop()                                 # connection refused at once
    try:
        assert asyncio.run(go(0.2)) == (1, True)         # time left: one retry, then the fallback
    finally:
        session_store.start()
    assert asyncio.run(go(0.2)) == (0, False)            # a good read is not retried


def test_no_consent_reads_no_personal_data(origin, session_store) -> None:
    client, node = origin
    session_store.stop()            # a read would fail and mark the answer degraded: none may happen
    try:
        d = client.post("/v1/explain", json={**BODY, "item_ids": [_dairy_item(node)],
                                              "context": {"consent": False}}).json()
        assert d["degraded"] is False and d["route_reasons"] == ["no_consent_context_only"]
        assert not d["items"][0]["reason"].endswith("you recently browsed dairy.")
    finally:
        session_store.start()


def test_retrieval_fails_popular_items_answer(origin, tmp_path) -> None:
    client, node = origin
    dead = EdgeVectorIndex.create(tmp_path / "dead", EMBED_DIM, FIELDS)
    dead.close()                                        # the real engine, closed: every search fails
    with swapped(node.state, "index", dead):
        d = client.post("/v1/recommend", json={**BODY, "query": "organic bread"}).json()
    assert d["degraded"] is True and "retrieval_failed" in d["route_reasons"]
    assert len(d["items"]) == 10
    assert all("ann_source" not in it["sources"] for it in d["items"])


class _BrokenRanker:
    def score(self, x):
        raise RuntimeError("onnxruntime session lost")


def test_ranker_fails_retrieval_order_answers(origin) -> None:
    client, node = origin
    with swapped(node.state, "ranker", _BrokenRanker()):
        d = client.post("/v1/recommend", json={**BODY, "context": {"consent": False}}).json()
    assert d["degraded"] is True and "ranker_failed" in d["route_reasons"]
    assert len(d["items"]) == 10
    n = len(node.state.pool("web")[:200])
    popular_scores = {round(1.0 - i / n, 6) for i in range(n)}
    assert all(it["score"] in popular_scores for it in d["items"])


def test_guardrail_stage_failure_blocks_the_answer_with_503(origin) -> None:
    client, node = origin
    c = node.state.catalog
    with swapped(c, "age_restricted", c.age_restricted[:-1]), swapped(c, "version", c.version + 1000):
        r = client.post("/v1/recommend", json=BODY)
    assert r.status_code == 503
    body = r.json()
    assert body["error"]["code"] == "guardrail_unavailable" and body["retriable"] is True
    assert "no unchecked items are served" in body["error"]["reason"]
    assert r.headers["retry-after"] == "1"
    assert "items" not in body
    assert client.post("/v1/recommend", json=BODY).status_code == 200     # back once the guard compiles


def _explain_with(client, node, reasoner) -> dict:
    with swapped(_stage(node, "reason"), "reasoner", reasoner):
        return client.post("/v1/explain", json={**BODY, "k": 3}).json()


def test_llm_down_template_answers_after_one_retry_inside_the_deadline(origin) -> None:
    client, node = origin
    port = free_port()                                  # nothing listens: connection refused
    llm = VllmReasoner(f"http://127.0.0.1:{port}", "m", deadline_s=0.2)
    d = _explain_with(client, node, llm)
    assert (d["reasoner"], d["fallback"], len(d["items"])) == ("template", "unavailable", 3)
    assert llm.retries == 1 and llm.fallbacks == {"unavailable": 1}
    short = VllmReasoner(f"http://127.0.0.1:{port}", "m", deadline_s=0.04)   # < 50 ms left: no retry
    _explain_with(client, node, short)
    assert short.retries == 0 and short.fallbacks == {"unavailable": 1}


def test_llm_late_template_answers_at_the_deadline(origin) -> None:
    client, node = origin
    with socket.socket() as silent:                      # accepts (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        llm = VllmReasoner(f"http://127.0.0.1:{silent.getsockname()[1]}", "m", deadline_s=0.2)
        d = _explain_with(client, node, llm)
    assert (d["reasoner"], d["fallback"]) == ("template", "timeout")


def test_llm_over_budget_is_not_called(origin) -> None:
    client, node = origin
    llm = VllmReasoner("http://127.0.0.1:9", "m", budget=TokenBudget(per_minute=10_000, per_day=100))
    d = _explain_with(client, node, llm)
    assert (d["reasoner"], d["fallback"]) == ("template", "over_budget")
    assert llm.retries == 0
