"""Tier 2 feeding tier 3 on real engines: view events go through the ingest service and the stream processor
(real Tansu broker, real Valkey), which writes the session's ``recent`` items; the origin (real exported
two-tower and deep ranker, real Qdrant Edge) reads them and its two-tower source runs on them. A session
without events gets no two-tower candidates (the user bought nothing either)."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from strata.shared.keys import session_key
from strata.shared.ranking.session_update import recent_items
from strata.streaming.catalog import load_catalog
from tests.integration.streaming_kit import (
    bounded,
    ingest,
    post_all,
    processing,
    streaming_settings,
    wait_until,
)

USER, SESSION = "u-stream-origin", "s-stream-origin"
VIEWED = ["SKU-000021", "SKU-000007", "SKU-000042"]       # in the order the user viewed them


def test_the_origin_ranks_with_the_recent_items_the_processor_wrote(tansu_proc, any_store,
                                                                      models_registry_dir) -> None:
    catalog = load_catalog(models_registry_dir, "edge-scorer")
    cfg = streaming_settings(tansu_proc.bootstrap, any_store.url, models_registry_dir)
    t0 = int(time.time() * 1000) - 60_000
    events = [{"event_id": f"so-{i}", "type": "view", "user_id": USER, "session_id": SESSION, "ts": t0 + 1000 * i,
               "channel": "web", "item_id": item} for i, item in enumerate(VIEWED)]
    store = any_store.client()
    key = session_key("default", SESSION)

    async def feed() -> None:
        async with ingest(cfg) as (client, _):
            await post_all(client, events)
        async with processing(cfg, catalog):
            await wait_until(lambda: recent_items(store.hget(key, "recent")) == VIEWED[::-1],
                             what="the processor's recent items")

    try:
        asyncio.run(bounded(feed(), 120, "feeding the processor"))
    finally:
        store.close()
    # a roomy store budget: the first read of a cluster client in a new event loop discovers the slot map and
    # connects, which can pass 500 ms on a loaded machine (then the profile is served empty: degraded, tested apart)
    node = OriginNode(load_settings(origin={"registry": str(models_registry_dir), "explore_slots": 0,
                                            "store": {"url": any_store.url, "timeout_ms": 5000.0}}))
    with TestClient(build_app(node)) as client:
        profile = asyncio.run(node.profiles.get("default", USER, SESSION))
        assert list(profile.recent) == VIEWED[::-1] and not profile.purchases
        ranked = node.rank.scored_by.get("ranker", 0)
        r = client.post("/v1/recommend", json={"user_id": USER, "session_id": SESSION, "k": 10,
                                               "context": {"consent": True}})
        d = r.json()
        assert r.status_code == 200 and not d["degraded"], r.text
        assert sum("two_tower_source" in it["sources"] for it in d["items"]) >= 5
        assert node.rank.scored_by["ranker"] == ranked + 1              # the deep ranker ranked it
        other = client.post("/v1/recommend", json={"user_id": USER, "session_id": "s-no-events", "k": 10,
                                                   "context": {"consent": True}}).json()
        assert not any("two_tower_source" in it["sources"] for it in other["items"])
