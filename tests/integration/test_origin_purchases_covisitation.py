"""Already-purchased filtering (real Valkey: purchases written by the real stream processor plan's ops) and
the co-visitation source (the real exporter's table in the session's bundle)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from tests.integration.streaming_kit import apply_purchases

BODY = {"user_id": "u-buyer", "session_id": "s-buyer", "k": 10, "query": "organic bread"}


def _node(registry_dir, store, filter_purchased: bool) -> OriginNode:
    return OriginNode(load_settings(origin={"registry": str(registry_dir), "filter_purchased": filter_purchased,
                                            "store": {"url": store.url, "timeout_ms": 200.0}}))


@pytest.fixture(scope="module")
def filtering(registry_dir, session_store) -> Iterator[tuple[TestClient, OriginNode]]:
    session_store.start()
    with TestClient(build_app(node := _node(registry_dir, session_store, True))) as client:
        yield client, node


def _buy(store, items: list[str]) -> None:
    apply_purchases(store, "u-buyer", "s-buyer", items, 1_700_000_000_000, 1, "p")


def test_already_purchased_items_are_removed_with_the_reason(filtering, fresh_valkey) -> None:
    client, _ = filtering
    first = [it["item_id"] for it in client.post("/v1/recommend", json=BODY).json()["items"]]
    _buy(fresh_valkey, first[:3])
    d = client.post("/v1/recommend", json=BODY).json()
    ids = [it["item_id"] for it in d["items"]]
    assert not set(ids) & set(first[:3]) and len(ids) == 10
    assert d["removed"]["already_purchased"] == 3
    # without consent nothing personal is read: the purchases are not used
    d = client.post("/v1/recommend", json={**BODY, "context": {"consent": False}}).json()
    assert "already_purchased" not in d["removed"]
    # explaining given items explains them, bought or not
    d = client.post("/v1/explain", json={**BODY, "item_ids": first[:2]}).json()
    assert {it["item_id"] for it in d["items"]} == set(first[:2])


def test_the_filter_is_off_by_default(registry_dir, fresh_valkey) -> None:
    with TestClient(build_app(_node(registry_dir, fresh_valkey, False))) as client:
        first = [it["item_id"] for it in client.post("/v1/recommend", json=BODY).json()["items"]]
        _buy(fresh_valkey, first[:3])
        d = client.post("/v1/recommend", json=BODY).json()
        assert "already_purchased" not in d["removed"]
        assert set(first[:3]) & {it["item_id"] for it in d["items"]}


def test_covisitation_expands_the_querys_best_items(filtering, fresh_valkey) -> None:
    client, node = filtering
    table = node.state.covisitation
    cat = node.state.catalog
    assert table is not None and len(table) == len(cat)
    brand = cat.titles[int(np.argmax((table.neighbors >= 0).sum(axis=1)))].split()[0]   # ~40 items per brand
    d = client.post("/v1/recommend", json={**BODY, "query": brand, "k": 60}).json()
    covis = [it["item_id"] for it in d["items"] if "covisitation_source" in it["sources"]
             and brand not in cat.titles[cat.row[it["item_id"]]]]
    assert covis, "no co-visited item (without the query's word) in a 60-item answer"
    # each is a neighbour of an item that matched the query's word
    seeds = [r for r in range(len(cat)) if brand in cat.titles[r].split()]
    neighbours = set(table.neighbors[seeds].ravel().tolist())
    assert all(cat.row[i] in neighbours for i in covis)


def test_the_profile_carries_the_purchases_and_they_seed_covisitation(filtering, fresh_valkey) -> None:
    import asyncio

    from strata.origin.profiles import RedisProfileStore
    from strata.origin.stages.covisit_source import CovisitationSource
    from strata.origin.stages.ctx import OriginCtx
    from strata.origin.stages.validate import Validate
    from strata.shared.serving.codecs import JSON
    from strata.shared.serving.request_stages import Decode

    _, node = filtering
    table = node.state.covisitation
    row = int(np.argmax((table.neighbors >= 0).sum(axis=1)))      # an item with many neighbours
    bought = node.state.catalog.item_ids[row]
    _buy(fresh_valkey, [bought])

    async def read():
        store = RedisProfileStore(fresh_valkey.url, 1.0)
        try:
            return await store.read("default", "u-buyer", "s-buyer")
        finally:
            await store.close()

    profile = asyncio.run(read())
    assert profile.purchased == frozenset({bought})
    ctx = OriginCtx(0, b'{"user_id": "u-buyer", "session_id": "s-buyer", "k": 10}', None, None, JSON, node.state)
    Decode().run(ctx)
    Validate().run(ctx)
    ctx.profile = profile
    CovisitationSource(limit=100).run(ctx)
    expected = {r for r in table.neighbors[row].tolist() if r >= 0}
    assert set(ctx.sources) == expected and row not in ctx.sources
    assert all(ctx.sources[r] == ["covisitation_source"] for r in expected)
