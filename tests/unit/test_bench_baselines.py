"""Baseline servers answer the edge's payloads with the same bundle, and refuse bad input with a 4xx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from strata.loadtest.baselines import fastapi_app, lean_asgi
from strata.loadtest.baselines.naive_ranker import NaiveRanker
from strata.loadtest.payloads import PayloadSpec, cached_mix, load_catalog


@pytest.fixture(scope="module")
def ranker(registry_dir) -> NaiveRanker:
    return NaiveRanker(registry_dir, seed=5)


@pytest.fixture(scope="module")
def body(registry_dir) -> dict:
    return cached_mix(load_catalog(registry_dir), 1, PayloadSpec(n_candidates=100))[0]


def _post(app, payload) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            if isinstance(payload, bytes):
                return await c.post("/v1/recommend", content=payload,
                                    headers={"content-type": "application/json"})
            return await c.post("/v1/recommend", json=payload)
    return asyncio.run(go())


def test_naive_ranker_ranks_k_of_the_candidates(ranker: NaiveRanker, body: dict) -> None:
    r = ranker.rank(body["candidates"], "web", "mobile", 20, 7)
    assert len(r.item_ids) == 7 == len(set(r.item_ids))
    assert set(r.item_ids) <= set(body["candidates"])
    assert r.scores == sorted(r.scores, reverse=True)
    assert sum(r.explored) <= 2   # explore budget 0.3 of k=7


def test_naive_ranker_gives_unknown_ids_the_cold_prior(ranker: NaiveRanker) -> None:
    r = ranker.rank(["nope-1", "nope-2"], "app", "other", 3, 2)
    assert sorted(r.item_ids) == ["nope-1", "nope-2"]


@pytest.mark.parametrize("module", [lean_asgi, fastapi_app])
def test_baseline_serves_the_edge_payload(module, ranker: NaiveRanker, body: dict) -> None:
    resp = _post(module.build_app(ranker), body)
    assert resp.status_code == 200
    out = resp.json()
    assert len(out["items"]) == body["k"]
    assert set(out["items"][0]) == {"item_id", "score", "explored"}
    assert out["model_version"] == ranker.version


@pytest.mark.parametrize("module", [lean_asgi, fastapi_app])
def test_baseline_refuses_k_out_of_range(module, ranker: NaiveRanker, body: dict) -> None:
    resp = _post(module.build_app(ranker), {**body, "k": 101})
    assert resp.status_code == 422
    assert "k" in resp.text


@pytest.mark.parametrize("module", [lean_asgi, fastapi_app])
def test_baseline_refuses_malformed_json(module, ranker: NaiveRanker) -> None:
    resp = _post(module.build_app(ranker), b"{not json")
    assert 400 <= resp.status_code < 500
