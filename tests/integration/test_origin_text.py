"""The origin with a text-encoder bundle (real MiniLM in ONNX, real Qdrant Edge shard from the bundle):
queries retrieve by meaning, a new item is embedded and found at once (cold), and a broken text index
falls back to word matching, degraded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings

BODY = {"user_id": "u1", "session_id": "s1", "k": 10}
NEW = {"item_id": "NEW-GRINDER", "title": "Barista burr espresso grinder", "category": "kitchen", "price": 89.0,
       "stock": 3, "age_restricted": False}


@pytest.fixture(scope="module")
def origin(text_registry_dir) -> Iterator[tuple[TestClient, OriginNode]]:
    node = OriginNode(load_settings(origin={"registry": str(text_registry_dir)},
                                   guardrails={"banned_categories": ["wine"]}))
    with TestClient(build_app(node)) as client:
        yield client, node


def _facts(node: OriginNode, item_id: str) -> tuple[str, str]:
    c = node.state.catalog
    return c.titles[c.row[item_id]], c.categories[c.row[item_id]]


def test_text_search_opens_the_shipped_shard_without_embedding_the_catalog(origin) -> None:
    client, node = origin
    stats = node.state.text.load_stats
    assert stats["shipped_shard"] is True and stats["embedded_at_load"] == 0 and stats["items"] == 2000
    assert client.get("/readyz").json()["text_encoder"] == node.state.text.version


def test_a_query_retrieves_by_meaning_not_words(origin) -> None:
    client, node = origin
    d = client.post("/v1/recommend", json={**BODY, "query": "something to play with for a child"}).json()
    cats = [_facts(node, it["item_id"])[1] for it in d["items"]]
    assert sum(c in ("toys", "baby") for c in cats) >= 3, cats   # no title says "play" or "child"
    assert all("content_source" in it["sources"] for it in d["items"][:3])


def test_a_new_item_is_embedded_and_found_cold_by_a_close_query(origin) -> None:
    client, node = origin
    query = {**BODY, "query": "coffee bean mill"}              # no word in common with the new title
    before = [it["item_id"] for it in client.post("/v1/recommend", json=query).json()["items"]]
    assert NEW["item_id"] not in before
    r = client.post("/v1/items", json={"items": [NEW]})
    assert r.status_code == 200, r.text
    d = client.post("/v1/recommend", json=query).json()
    top = d["items"][0]
    assert top["item_id"] == NEW["item_id"] and "content_source" in top["sources"]
    # the index follows catalog writes: out of stock, it is not retrieved any more
    client.post("/v1/items", json={"items": [{**NEW, "stock": 0}]})
    d = client.post("/v1/recommend", json=query).json()
    assert NEW["item_id"] not in [it["item_id"] for it in d["items"]]
    client.post("/v1/items", json={"items": [NEW]})


def test_banned_and_age_gated_items_are_not_retrieved_by_text(origin) -> None:
    client, node = origin
    d = client.post("/v1/recommend", json={**BODY, "query": "a bottle of red for dinner"}).json()
    cats = {_facts(node, it["item_id"])[1] for it in d["items"]}
    assert "wine" not in cats and not cats & {"spirits", "beer", "tobacco"}
    assert d["removed"].get("banned_category", 0) == 0 or "wine" not in cats


def test_a_failing_text_index_falls_back_to_words_degraded(text_registry_dir) -> None:
    node = OriginNode(load_settings(origin={"registry": str(text_registry_dir)}))
    with TestClient(build_app(node)) as client:
        node.state.text.index.close()                         # the engine is gone: every search raises
        d = client.post("/v1/recommend", json={**BODY, "query": "organic bread"}).json()
        assert d["degraded"] is True and "text_search_failed" in d["route_reasons"]
        hits = [it for it in d["items"] if "content_source" in it["sources"]]
        assert hits and all({"organic", "bread"} & set(_facts(node, it["item_id"])[0].lower().split())
                            for it in hits)


def test_stated_tastes_stand_in_for_a_query(text_registry_dir, fresh_valkey) -> None:
    import orjson

    from strata.shared.keys import profile_key

    c = fresh_valkey.client()
    try:
        c.hset(profile_key("default", "u-taste"), "stated", orjson.dumps({"categories": ["toys"], "brands": []}))
    finally:
        c.close()
    node = OriginNode(load_settings(origin={"registry": str(text_registry_dir),
                                            "store": {"url": fresh_valkey.url, "timeout_ms": 200.0}}))
    body = {"user_id": "u-taste", "session_id": "s-taste", "k": 10}
    with TestClient(build_app(node)) as client:
        d = client.post("/v1/recommend", json=body).json()
        cats = [_facts(node, it["item_id"])[1] for it in d["items"]]
        assert cats.count("toys") >= 3 and "content_source" in d["items"][0]["sources"], cats
        # without consent the stated tastes are personal data: not read, not used
        d = client.post("/v1/recommend", json={**body, "context": {"consent": False}}).json()
        assert not any("content_source" in it["sources"] for it in d["items"])


def test_the_qdrant_backend_is_filled_from_the_bundles_vectors(text_registry_dir, tmp_path) -> None:
    from strata.origin.bundle import load_origin_bundle
    from strata.origin.text_search import load_text_search

    catalog = load_origin_bundle(text_registry_dir, "edge-scorer").catalog
    local = load_text_search(text_registry_dir, catalog, backend="qdrant", location=":memory:")
    edge = load_text_search(text_registry_dir, catalog, shard_dir=tmp_path / "t")
    try:
        assert local.load_stats["shipped_shard"] is False and local.load_stats["embedded_at_load"] == 0
        assert local.index.count() == edge.index.count() == len(catalog)
        q = local.embed("a warm jacket for winter")
        a, b = local.search(q, 5), edge.search(q, 5, ef=200)      # equal scores: items with the same title
        assert [round(h.score, 5) for h in a] == [round(h.score, 5) for h in b]
        assert a[0].score > 0.5 and catalog.categories[catalog.row[a[0].key]] == "apparel"
    finally:
        local.close()
        edge.close()
