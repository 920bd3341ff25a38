"""One ranking kernel: the same request and the same state give the same ranking at the edge and in tier 2
(same items, same order, same scores, same confidence and route), in-process with real components: the
exported bundle, a real valkey-server holding the session vector and the slot's counts (the edge reads
them through its PoP cache and background refresh, tier 2 straight from the store), both samplers seeded
alike."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson

from strata.edge.bandit_refresh import BanditRefresher
from strata.edge.node import EdgeNode
from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.shared.serving.pipeline import Reply
from strata.streaming.tier2.service import Tier2Service

JSON = b"application/json"
SEED = 7


def _settings(registry_dir, url: str, banned: str):
    store = {"url": url, "timeout_ms": 1000.0}
    return load_settings(
        guardrails={"banned_categories": [banned]},
        edge={"registry": str(registry_dir), "store": store, "bandit": {"seed": SEED}},
        streaming={"registry": str(registry_dir), "store": url,
                   "tier2": {"bandit": {"seed": SEED}, "store_timeout_ms": 1000.0, "log_impressions": False}})


async def _tier2(t2: Tier2Service, body: dict) -> dict:
    out = t2.handler.try_now(orjson.dumps(body), JSON, None)
    reply = out if isinstance(out, Reply) else await t2.handler.finish(out)
    assert reply.status == 200, reply.body
    return orjson.loads(reply.body)


async def _edge(node: EdgeNode, body: dict) -> dict:
    status, _, payload = await node.handle_recommend(orjson.dumps(body), JSON, None)
    assert status == 200, payload
    return orjson.loads(payload)


def test_the_same_request_and_state_rank_the_same_at_the_edge_and_in_tier2(registry_dir, store_redis,
                                                                            fresh_valkey) -> None:
    probe = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))
    bundle = probe.load_model()
    ids, cats = bundle.item_ids, np.asarray(bundle.categories)
    names = sorted(set(bundle.categories))
    banned = names[0]
    rng = np.random.default_rng(3)
    # the state: a session vector, and counts for candidates and for pool items (a fill ranks with them too)
    vec = bundle.item_vectors[40:50].mean(axis=0)
    vec = (vec / np.linalg.norm(vec)).astype("<f4")
    store_redis.hset(K.session_key("default", "s-vec"), mapping={"vec": vec.tobytes(),
                                                                 "updated_ms": int(time.time() * 1000)})
    counted = [ids[r] for r in rng.choice(len(ids), 400, replace=False)] + [ids[r] for r in bundle.pools["default"][:60]]
    counts = {}
    for item in counted:
        n = int(rng.integers(1, 400))
        counts[K.imps_field(item)] = n
        counts[K.clicks_field(item)] = int(rng.integers(0, n // 4 + 1))
    counts[K.imps_field("not-in-bundle")], counts[K.clicks_field("not-in-bundle")] = 50, 20
    store_redis.hset(K.bandit_key("default", "home"), mapping=counts)

    some = [ids[r] for r in rng.choice(len(ids), 97, replace=False)]
    of_banned = [ids[r] for r in np.flatnonzero(cats == banned)[:20]]
    few_cats = [ids[r] for r in np.flatnonzero(np.isin(cats, names[1:4]))[:100]]
    requests = [
        {"session_id": "s-vec", "k": 12, "candidates": [*some, "not-in-bundle", "nope-1", *of_banned[:5]]},
        {"session_id": "s-new", "k": 10, "candidates": [*of_banned, *some[:4]]},          # guardrails -> fill
        {"session_id": "s-vec", "k": 8, "candidates": some[:30], "context": {"consent": False}},
        {"session_id": "s-new", "k": 6},                                                  # the popular pool
        {"session_id": "s-vec", "k": 60, "candidates": few_cats},                         # cap relaxed
        {"session_id": "s-vec", "k": 4, "candidates": some[:50], "context": {"channel": "app", "hour": 3,
                                                                            "device": "mobile"}},
    ]
    settings = _settings(registry_dir, fresh_valkey.url, banned)

    async def go() -> list[tuple[dict, dict]]:
        node = EdgeNode(settings)
        node.load_model()
        t2 = Tier2Service(settings)
        await node.start()
        await t2.start()
        try:
            assert await BanditRefresher(node.slot, node.store, node.health).refresh_once() >= 1
            pairs = []
            for body in requests:
                body = {"user_id": "u1", "slot": "home", **body}
                pairs.append((await _edge(node, body), await _tier2(t2, body)))
            return pairs
        finally:
            await t2.stop()
            await node.stop()

    pairs = asyncio.run(go())
    for (edge, tier2), body in zip(pairs, requests, strict=True):
        assert (edge["tier"], tier2["tier"]) == ("edge", "streaming")
        assert edge["items"] == tier2["items"], body
        assert edge["confidence"] == tier2["confidence"] and edge["route_tier"] == tier2["route_tier"], body
        assert set(edge["route_reasons"]) <= set(tier2["route_reasons"]), body
        assert edge["degraded"] is tier2["degraded"] is False
    # the cases exercise what they are meant to (else this test would prove less than it says)
    first, fill, no_consent, pool, relaxed, _ = (e for e, _ in pairs)
    assert "no_session_vector" not in first["route_reasons"] and first["unknown_candidates"] == 2
    assert "filled_from_pool" in fill["route_reasons"] and len(fill["items"]) == 10
    assert "no_consent_context_only" in no_consent["route_reasons"] and "no_session_vector" in no_consent["route_reasons"]
    assert len(pool["items"]) == 6 and "diversity_cap_relaxed" in relaxed["route_reasons"]
    assert len(relaxed["items"]) == 60
