"""Tenant isolation with ``auth.enabled`` on every tier (real Tansu, valkey-server, bundle; the edge on its own
HTTP server): no key is 401, a key without the route's scope 403, a body naming another tenant 403; the tenant
comes from the key, so tenant A can neither read nor change anything of tenant B through any route, and every
store key written carries the writer's tenant. ``/healthz``, ``/readyz`` and ``/metrics`` stay open.

The probe of the review's finding 4 (``b2_cross_user_read.py``: another tenant's user read through tier 2 and
the origin's explain) is ``test_tier2_and_ingest_*`` and ``test_origin_*``."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app as origin_app
from strata.origin.node import OriginNode
from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.shared.ranking.features import EMBED_DIM
from strata.streaming.catalog import load_catalog
from tests.integration.auth_kit import Keys, assert_refused, bearer, make_keys, streaming_app
from tests.integration.streaming_kit import processing, streaming_settings, wait_until

OPS = ("/healthz", "/readyz", "/metrics")


@pytest.fixture
def keys(tmp_path, monkeypatch) -> Keys:
    return make_keys(tmp_path, monkeypatch)


def _events(user: str, session: str, items: list[str], prefix: str) -> dict:
    now = int(time.time() * 1000)
    return {"events": [{"event_id": f"{prefix}-{i}", "type": "view", "user_id": user, "session_id": session,
                        "ts": now - 1000 + i, "channel": "web", "item_id": it} for i, it in enumerate(items)]}


def _tenants_of_keys(r) -> dict[str, set[str]]:
    """Store key -> the tenant in its hash tag, for every key the processor wrote (scanning the whole store)."""
    out: dict[str, set[str]] = {}
    for raw in r.scan_iter(count=1000):
        key = raw.decode()
        if key.startswith("strata:{") and not key.startswith(K.STREAM) and not key.endswith("}:done"):
            # (the processor's own control state, never served: ``{stream}``, its watermarks and dedup sets, and
            # on a cluster its per-slot marks of applied journal entries, ``keys.done_key``)
            tag = key[len("strata:{"):key.index("}")]
            out.setdefault(tag.split(":")[0], set()).add(key)
    return out


def test_tier2_and_ingest_keep_tenants_apart(keys, tansu_proc, fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    items = [i for i, r in catalog.index.items() if catalog.vectors[r].any()][:6]
    rec = {"user_id": "alice", "session_id": "s-b", "k": 5}

    async def go() -> None:
        async with streaming_app(cfg) as (client, _):
            # who: no key, not a Bearer key, a revoked key, a key without the scope
            ev = _events("alice", "s-b", items[:1], "x")
            assert_refused(await client.post("/v1/events", json=ev), 401, "Authorization", "API key is required")
            assert_refused(await client.post("/v1/recommend", json=rec, headers={"authorization": "Basic eDp5"}),
                           401, "Authorization", "Bearer")
            assert_refused(await client.post("/v1/events", json=ev, headers=bearer(keys.revoked)), 401,
                           "Authorization", "unknown or revoked key")
            assert_refused(await client.post("/v1/events", json=ev, headers=bearer(keys.a_recommend)), 403,
                           "Authorization", "lacks scope 'events'")
            for path in OPS:                                      # probes and scrapers need no key
                assert (await client.get(path)).status_code in (200, 503), path
            # A writes as B: refused as a whole (one event naming shopB in a batch of A's own)
            forged = _events("alice", "s-b", items, "forged")
            forged["events"][2]["tenant"] = "shopB"
            assert_refused(await client.post("/v1/events", json=forged, headers=bearer(keys.a)), 403, "tenant",
                           "belongs to tenant 'shopA'")
            # B's own activity (no tenant in the body: the key's), and A's under the same user and session ids
            resp = await client.post("/v1/events", json=_events("alice", "s-b", items[:3], "b"), headers=bearer(keys.b))
            assert resp.status_code == 202, resp.text
            resp = await client.post("/v1/events", json=_events("alice", "s-a", items[3:], "a"), headers=bearer(keys.a))
            assert resp.status_code == 202, resp.text
            r = fresh_valkey.client()
            try:
                async with processing(cfg, catalog):
                    await wait_until(lambda: r.hget(K.session_key("shopB", "s-b"), "vec") is not None
                                     and r.hget(K.session_key("shopA", "s-a"), "vec") is not None,
                                     what="both tenants' session vectors")
                    # B sees its session; A naming B's session id reads its own tenant, where it does not exist
                    b_ans = (await client.post("/v1/recommend", json=rec, headers=bearer(keys.b))).json()
                    a_ans = (await client.post("/v1/recommend", json=rec, headers=bearer(keys.a))).json()
                    assert "fresh_session_vector" in b_ans["route_reasons"], b_ans
                    assert "no_session_vector" in a_ans["route_reasons"], a_ans
                    assert_refused(await client.post("/v1/recommend", json={**rec, "tenant": "shopB"},
                                                     headers=bearer(keys.a)), 403, "tenant", "not 'shopB'")
                    await asyncio.sleep(0.5)       # tier 2's logged impressions reach the store too
                tenants = _tenants_of_keys(r)
                # every key the store holds carries a key's tenant; B's session only under B, A's only under A
                assert set(tenants) == {"shopA", "shopB"}, tenants.keys()
                assert not r.exists(K.session_key("shopA", "s-b")) and not r.exists(K.session_key("shopB", "s-a"))
                # B's profile saw B's 3 views and nothing of A's (A's forged batch was refused whole)
                prof_b = r.hgetall(K.profile_key("shopB", "alice"))
                prof_a = r.hgetall(K.profile_key("shopA", "alice"))
                assert prof_b and prof_a and prof_b != prof_a
            finally:
                r.close()

    asyncio.run(go())


def test_origin_reads_only_the_keys_tenant_and_guards_the_catalog(keys, fresh_valkey, store_redis,
                                                                  registry_dir) -> None:
    settings = load_settings(origin={"registry": str(registry_dir), "store": {"url": fresh_valkey.url}})
    node = OriginNode(settings)
    node.load()
    c = node.state.catalog
    baby = next(r for r in range(len(c)) if c.categories[r] == "baby" and not c.age_restricted[r])
    item = c.item_ids[baby]
    # shopB's user alice recently browsed baby (the processor's profile layout)
    store_redis.hset(K.profile_key("shopB", "alice"), "recent_categories", orjson.dumps(["baby"]))
    body = {"user_id": "alice", "session_id": "x", "item_ids": [item]}
    with TestClient(origin_app(node)) as client:
        assert_refused(client.post("/v1/explain", json=body), 401, "Authorization", "API key is required")
        assert_refused(client.post("/v1/explain", json=body, headers=bearer(keys.a_recommend)), 403,
                       "Authorization", "lacks scope 'explain'")
        b = client.post("/v1/explain", json=body, headers=bearer(keys.b)).json()
        assert b["items"][0]["reason"].endswith("you recently browsed baby."), b
        a = client.post("/v1/explain", json=body, headers=bearer(keys.a)).json()        # shopA's alice
        assert "recently browsed" not in a["items"][0]["reason"], a
        assert_refused(client.post("/v1/explain", json={**body, "tenant": "shopB"}, headers=bearer(keys.a)), 403,
                       "tenant", "not 'shopB'")
        assert_refused(client.post("/v1/recommend", json={**body, "tenant": "shopB"} | {"item_ids": None},
                                   headers=bearer(keys.a)), 403, "tenant", "not 'shopB'")
        # the catalog: catalog:write of the catalog's tenant only
        update = {"items": [{"item_id": item, "title": "Onesie", "category": "baby", "price": 5.0, "stock": 3,
                             "age_restricted": False}]}
        assert_refused(client.post("/v1/items", json=update), 401, "Authorization", "API key is required")
        assert_refused(client.post("/v1/items", json=update, headers=bearer(keys.a)), 403, "Authorization",
                       "lacks scope 'catalog:write'")
        assert_refused(client.post("/v1/items", json=update, headers=bearer(keys.b_catalog)), 403,
                       "Authorization", "catalog belongs to tenant 'shopA'")
        resp = client.post("/v1/items", json=update, headers=bearer(keys.a_catalog))
        assert resp.status_code == 200, resp.text
        for path in OPS:
            assert client.get(path).status_code == 200, path


def test_edge_caches_and_sessions_are_per_tenant(keys, serve_edge, fresh_valkey, store_redis, registry_dir) -> None:
    """B's session vector in the store, then byte-identical bodies (no tenant) from B and A: A is answered from
    its own tenant (no session), never from B's cached answer, and naming B is 403."""
    vec = np.zeros(EMBED_DIM, dtype=np.float32)
    vec[0] = 1.0
    store_redis.hset(K.session_key("shopB", "s-b"), mapping={"vec": vec.tobytes(),
                                                             "updated_ms": int(time.time() * 1000)})
    body = orjson.dumps({"user_id": "alice", "session_id": "s-b", "k": 5})
    with serve_edge(registry_dir, store=fresh_valkey.url) as (port, _), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        def post(key: str | None, content: bytes = body) -> httpx.Response:
            headers = {"content-type": "application/json", **(bearer(key) if key else {})}
            return client.post("/v1/recommend", content=content, headers=headers)

        assert_refused(post(None), 401, "Authorization", "API key is required")
        assert_refused(post(keys.revoked), 401, "Authorization", "unknown or revoked key")
        b1, b2 = post(keys.b).json(), post(keys.b).json()
        assert "no_session_vector" not in b1["route_reasons"] and b2["timing"]["cache"] == "hit"
        a = post(keys.a).json()
        assert "no_session_vector" in a["route_reasons"] and a["timing"]["cache"] == "miss", a
        assert_refused(post(keys.a, orjson.dumps({"tenant": "shopB", "user_id": "alice", "session_id": "s-b"})),
                       403, "tenant", "not 'shopB'")
        # the server reads the first Authorization field while parsing, as the ASGI path's gate does
        first_a = client.post("/v1/recommend", content=body, headers=[
            ("content-type", "application/json"), ("authorization", f"Bearer {keys.a}"),
            ("authorization", f"Bearer {keys.b}")])
        assert first_a.status_code == 200 and "no_session_vector" in first_a.json()["route_reasons"]
        assert_refused(client.post("/v1/recommend", content=body, headers=[
            ("content-type", "application/json"), ("authorization", "Bearer junk"),
            ("authorization", f"Bearer {keys.b}")]), 401, "Authorization", "unknown or revoked key")
        for path in OPS:
            assert client.get(path).status_code == 200, path
