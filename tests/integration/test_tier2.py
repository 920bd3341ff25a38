"""Tier 2's scorer (``POST /v1/recommend``, ``tier="streaming"``) on real engines: the session vector the
processor just wrote (real Tansu + valkey-server) changes the next answer, counts are read fresh from the
store, bad input is a 4xx naming the field, and a store that is down gives the popular ranking, degraded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import msgpack
import numpy as np
import pytest

from strata.deploy.local import free_port
from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.streaming.app import build_app
from strata.streaming.catalog import load_catalog
from strata.streaming.service import IngestService
from strata.streaming.tier2.service import Tier2Service
from tests.integration.streaming_kit import processing, streaming_settings, wait_until
from tests.support.cluster import command_calls


@pytest.fixture(scope="module")
def catalog(registry_dir):
    return load_catalog(registry_dir, "edge-scorer")


@contextlib.asynccontextmanager
async def tier2(cfg, **guardrails) -> AsyncIterator[tuple[httpx.AsyncClient, Tier2Service]]:
    """The streaming service's app (ingest + tier 2) in-process, its lifespan run by hand."""
    settings = load_settings(streaming=cfg.model_dump(mode="json"), guardrails=guardrails)
    svc, t2 = IngestService(settings.streaming), Tier2Service(settings)
    await svc.start()
    await t2.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(svc, t2)), base_url="http://t2",
                                     timeout=30) as client:
            yield client, t2
    finally:
        await t2.stop()
        await svc.stop()


async def _recommend(client: httpx.AsyncClient, **body) -> dict:
    resp = await client.post("/v1/recommend", json={"user_id": "u1", "session_id": "s-t2", **body})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["tier"] == "streaming" and out["impression_id"] and out["request_id"]
    return out


def test_a_processed_click_changes_the_next_tier2_answer(tansu_proc, any_store, registry_dir, catalog) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, any_store.url, registry_dir)
    item = next(i for i, r in catalog.index.items() if catalog.vectors[r].any())
    target = catalog.vector(item)

    async def go() -> None:
        async with tier2(cfg) as (client, t2):
            before = await _recommend(client, k=8)
            assert before["route_reasons"][:2] == ["no_session_vector", "popular_candidates"]
            assert before["degraded"] is False and len(before["items"]) == 8
            ev = {"event_id": "t2-click-1", "type": "click", "user_id": "u1", "session_id": "s-t2",
                  "ts": int(time.time() * 1000), "channel": "web", "item_id": item}
            assert (await client.post("/v1/events", json=ev)).status_code == 202
            r = any_store.client()
            try:
                async with processing(cfg, catalog):
                    await wait_until(lambda: r.hget(K.session_key("default", "s-t2"), "vec") is not None,
                                     what="the session vector in the store")
                    # tier 2 logged its first answer as an impression (tier "streaming"): counted once per item,
                    # with the scorer's p behind each as expected clicks (millionths)
                    shown = {f"n:{it['item_id']}".encode(): b"1" for it in before["items"]}

                    def counted() -> bool:
                        got = r.hgetall(K.bandit_key("default", "home"))
                        imps = {f: v for f, v in got.items() if f.startswith(b"n:")}
                        expected = {f[2:] for f, v in got.items() if f.startswith(b"e:") and int(v) > 0}
                        return imps == shown and expected == {f[2:] for f in shown} and len(got) == 2 * len(shown)

                    await wait_until(counted, what="n: and e: counts of tier 2's logged impression")
            finally:
                r.close()
            assert t2.impressions.logged == 1
            after = await _recommend(client, k=8)
            assert after["route_reasons"][:2] == ["fresh_session_vector", "ann_candidates"]
            assert [it["item_id"] for it in after["items"]] != [it["item_id"] for it in before["items"]]
            # the candidates are the clicked item's neighbours: every answered item is among the 200 items
            # nearest to it that the age gate allows (brute force over the bundle's vectors)
            sims = np.where(t2.model.bundle.age_restricted, -2.0, catalog.vectors @ target)
            bound = np.sort(sims)[-t2.cfg.tier2.retrieve]
            assert all(float(catalog.vector(it["item_id"]) @ target) >= bound - 1e-5 for it in after["items"])
            mean_sim = [np.mean([float(catalog.vector(it["item_id"]) @ target) for it in a["items"]])
                        for a in (before, after)]
            assert mean_sim[1] > mean_sim[0] + 0.2, mean_sim

    asyncio.run(go())


def test_counts_are_read_fresh_and_guardrails_hold(any_store, any_redis, registry_dir, catalog) -> None:
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", any_store.url, registry_dir)
    ids = list(catalog.index)[:12]
    banned = catalog.category(ids[0])
    allowed = [i for i in ids if catalog.category(i) != banned]
    star = allowed[-1]

    async def go() -> None:
        async with tier2(cfg, banned_categories=[banned]) as (client, _):
            first = await _recommend(client, k=4, candidates=ids)
            served = [it["item_id"] for it in first["items"]]
            assert all(catalog.category(i) != banned for i in served) and len(served) == 4
            # the processor's counts for one candidate: 990 clicks in 1000 impressions -> ranked first
            any_redis.hset(K.bandit_key("default", "home"), mapping={f"c:{star}": 990, f"n:{star}": 1000})
            for _ in range(3):
                assert (await _recommend(client, k=4, candidates=ids))["items"][0]["item_id"] == star

    asyncio.run(go())


def test_bad_input_is_a_4xx_naming_the_field(fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", fresh_valkey.url, registry_dir)

    async def go() -> None:
        async with tier2(cfg) as (client, _):
            cases = [({"user_id": "u", "session_id": "s", "k": 0}, 422, "k"),
                     ({"user_id": "u", "session_id": "s", "colour": "red"}, 422, "body"),
                     ({"session_id": "s"}, 422, "user_id"),
                     ({"user_id": "u", "session_id": "s", "candidates": ["a", 3]}, 422, "candidates[1]")]
            for body, status, field in cases:
                resp = await client.post("/v1/recommend", json=body)
                assert resp.status_code == status and resp.json()["error"]["field"] == field, resp.text
            resp = await client.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
            assert resp.status_code == 400 and resp.json()["error"]["field"] == "body"
            resp = await client.post("/v1/recommend", content=b"x", headers={"content-type": "text/plain"})
            assert resp.status_code == 415
            # msgpack in, msgpack out
            resp = await client.post("/v1/recommend", content=msgpack.packb({"user_id": "u", "session_id": "s", "k": 3}),
                                     headers={"content-type": "application/msgpack"})
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/msgpack")
            assert len(msgpack.unpackb(resp.content)["items"]) == 3

    asyncio.run(go())


def test_store_down_answers_the_popular_ranking_degraded(registry_dir) -> None:
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", f"redis://127.0.0.1:{free_port()}/0", registry_dir)

    async def go() -> None:
        async with tier2(cfg) as (client, t2):
            out = await _recommend(client, k=6)
            assert out["degraded"] is True and len(out["items"]) == 6
            # what happened, then why the router would send it on (no session: the origin)
            assert out["route_reasons"] == ["store_unavailable", "popular_candidates", "low_confidence",
                                            "no_session_vector"]
            assert out["route_tier"] == "origin"
            pool = set(t2.model.bundle.item_ids[r] for r in t2.model.pool("web", False).tolist())
            assert {it["item_id"] for it in out["items"]} <= pool
            metrics = (await client.get("/metrics")).text
            assert "strata_tier2_degraded_total 1.0" in metrics
            assert 'strata_tier2_requests_total{status="200"} 1.0' in metrics

    asyncio.run(go())


def test_guardrails_that_empty_the_given_candidates_fill_from_the_pool(fresh_valkey, registry_dir, catalog) -> None:
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", fresh_valkey.url, registry_dir)
    banned = catalog.categories[0]
    given = [i for i, r in catalog.index.items() if catalog.categories[r] == banned][:5]

    async def go() -> None:
        async with tier2(cfg, banned_categories=[banned]) as (client, _):
            out = await _recommend(client, k=3, candidates=given)
            assert len(out["items"]) == 3 and "filled_from_pool" in out["route_reasons"]
            assert all(catalog.category(it["item_id"]) != banned and it["item_id"] not in given
                       for it in out["items"])

    asyncio.run(go())


def test_the_shared_front_door_refuses_encoded_bodies_and_other_methods(fresh_valkey, registry_dir) -> None:
    """Tier 2's route is the shared raw-ASGI front door: the same 415/405/413 answers as the edge's, counted."""
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", fresh_valkey.url, registry_dir, max_body_bytes=4096)
    body = b'{"user_id": "u", "session_id": "s", "k": 3}'

    async def go() -> None:
        async with tier2(cfg) as (client, _):
            gz = await client.post("/v1/recommend", content=body, headers={"content-type": "application/json",
                                                                            "content-encoding": "gzip"})
            assert gz.status_code == 415
            assert gz.json()["error"] == {"code": "unsupported_media_type", "field": "Content-Encoding",
                                          "reason": "Content-Encoding 'gzip' is not supported; send the body "
                                                    "uncompressed"}
            ok = await client.post("/v1/recommend", content=body, headers={"content-encoding": "identity"})
            assert ok.status_code == 200
            get = await client.get("/v1/recommend")
            assert get.status_code == 405 and get.headers["allow"] == "POST"
            assert get.json()["error"]["code"] == "method_not_allowed"
            big = await client.post("/v1/recommend", content=b"x" * 5000)
            assert big.status_code == 413 and big.json()["error"]["field"] == "body"
            metrics = (await client.get("/metrics")).text
            for status in ("415", "200", "405", "413"):
                assert f'strata_tier2_requests_total{{status="{status}"}} 1.0' in metrics, status

    asyncio.run(go())


def test_without_consent_tier2_reads_no_personal_data(any_store, any_redis, registry_dir, catalog) -> None:
    """Consent is a guardrail at tier 2: no session read, so no ANN on the session's vector either (the popular
    pool answers); the slot's counts (not personal) are still read."""
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", any_store.url, registry_dir)
    item = next(i for i, r in catalog.index.items() if catalog.vectors[r].any())
    any_redis.hset(K.session_key("default", "s-t2"), mapping={"vec": catalog.vector(item).astype("<f4").tobytes(),
                                                               "updated_ms": int(time.time() * 1000)})

    def hmget_calls() -> int:
        return command_calls(any_redis, "hmget")

    async def go() -> None:
        async with tier2(cfg) as (client, _):
            n0 = hmget_calls()
            refused = await _recommend(client, k=5, context={"consent": False})
            n1 = hmget_calls()
            given = await _recommend(client, k=5)
            n2 = hmget_calls()
            assert refused["route_reasons"][:2] == ["no_consent_context_only", "popular_candidates"]
            assert (n1 - n0, n2 - n1) == (1, 2)         # counts only; then session + counts
            assert given["route_reasons"][:2] == ["fresh_session_vector", "ann_candidates"]

    asyncio.run(go())
