"""Ops routes: health, readiness (model loaded; store state) and the Prometheus series the issue names."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings


def run(app, calls):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as c:
            return [await c.request(m, path, content=body, headers={"content-type": "application/json"})
                    for m, path, body in calls]
    return asyncio.run(go())


def test_readyz_is_503_until_a_model_is_loaded(registry_dir):
    svc = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))
    app = svc.asgi_app()
    health, ready = run(app, [("GET", "/healthz", b""), ("GET", "/readyz", b"")])
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.json()["reason"] == "no model loaded"
    svc.load_model()
    ready = run(app, [("GET", "/readyz", b"")])[0]
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model_version": svc.ranker.version, "store": "none", "degraded": False}


def test_metrics_expose_latency_cache_exploration_store_and_version(registry_dir):
    svc = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))
    svc.load_model()
    app = svc.asgi_app()
    body = orjson.dumps({"user_id": "u", "session_id": "s", "k": 10, "candidates": svc.ranker.bundle.item_ids[:50]})
    responses = run(app, [("POST", "/v1/recommend", body)] * 3 + [("POST", "/v1/recommend", b"{")]
                    + [("GET", "/metrics", b"")])
    assert [r.status_code for r in responses[:4]] == [200, 200, 200, 400]
    text = responses[-1].text
    assert 'strata_edge_request_seconds_count{route="/v1/recommend"} 4.0' in text
    assert 'strata_edge_requests_total{route="/v1/recommend",status="200"} 3.0' in text
    assert 'strata_edge_requests_total{route="/v1/recommend",status="400"} 1.0' in text
    assert 'strata_edge_cache_requests_total{cache="response",result="hit"} 2.0' in text
    assert 'strata_edge_cache_hit_ratio{cache="response"} 0.6666666666666666' in text
    assert "strata_edge_exploration_rate " in text
    assert "strata_edge_store_errors_total 0.0" in text
    assert f'strata_edge_model_info{{version="{svc.ranker.version}"}} 1.0' in text
    served = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("strata_edge_items_served_total")]
    assert served == [10.0]     # one cache miss ranked 10 items; the two hits ranked nothing
