"""The edge and tier 2 together on real engines: a session vector written by the processor reaches a
running edge through the invalidation channel, and its next answer uses it (not a cached one)."""

from __future__ import annotations

import asyncio
import time

import orjson

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings
from strata.streaming.catalog import load_catalog
from tests.integration.streaming_kit import ingest, processing, streaming_settings, wait_until

BODY = orjson.dumps({"user_id": "u-inv", "session_id": "s-inv", "k": 5})


def test_processor_write_invalidates_the_edge_and_changes_its_next_answer(tansu_proc, fresh_valkey,
                                                                          registry_dir) -> None:
    catalog = load_catalog(registry_dir, "edge-scorer")
    item = next(i for i, r in catalog.index.items() if catalog.vectors[r].any())
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    # long TTLs: without the invalidation, the edge would keep answering from its caches for a minute
    node = EdgeNode(load_settings(edge={
        "registry": str(registry_dir), "store": {"url": fresh_valkey.url, "timeout_ms": 200.0},
        "cache": {"response_ttl_s": 60.0, "session_ttl_s": 60.0}}))
    node.load_model()

    async def go() -> None:
        await node.start()
        try:
            await asyncio.wait_for(node.invalidations.subscribed.wait(), 10)
            status, _, body = await node.handle_recommend(BODY, b"application/json", None)
            first = orjson.loads(body)
            assert status == 200 and "no_session_vector" in first["route_reasons"]
            status, _, body = await node.handle_recommend(BODY, b"application/json", None)
            assert orjson.loads(body)["timing"]["cache"] == "hit"
            ev = {"event_id": "inv-1", "type": "click", "user_id": "u-inv", "session_id": "s-inv",
                  "ts": int(time.time() * 1000), "channel": "web", "item_id": item}
            async with ingest(cfg) as (client, _):
                assert (await client.post("/v1/events", json=ev)).status_code == 202
            async with processing(cfg, catalog):
                await wait_until(lambda: node.invalidations.received >= 1, what="the invalidation at the edge")
            assert node.sessions.get_entry(("default", "s-inv")) is None
            status, _, body = await node.handle_recommend(BODY, b"application/json", None)
            after = orjson.loads(body)
            assert status == 200 and after["timing"]["cache"] == "miss"
            assert "no_session_vector" not in after["route_reasons"]
            state = node.sessions.get_entry(("default", "s-inv"))[1]
            assert state.vec is not None and float(state.vec @ catalog.vector(item)) > 0.999
        finally:
            await node.stop()

    asyncio.run(go())
