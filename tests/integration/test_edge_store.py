"""Edge against a real valkey-server: session vectors, bandit counts, store outage and recovery."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson
import pytest

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings
from strata.shared.keys import bandit_key, clicks_field, imps_field, session_key
from tests.support.cluster import command_calls

JSON = b"application/json"


def make_service(registry_dir, url: str, clock=time.monotonic, **edge) -> EdgeNode:
    cfg = {"registry": str(registry_dir), "store": {"url": url, "timeout_ms": 50.0, "retry_after_s": 0.2,
                                                    "bandit_refresh_s": 0.1},
           "cache": {"response_size": 0}, "bandit": {"seed": 11}}
    for k, v in edge.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    svc = EdgeNode(load_settings(edge=cfg), clock=clock)
    svc.load_model()
    return svc


async def recommend(svc: EdgeNode, **body) -> dict:
    body.setdefault("user_id", "u1")
    body.setdefault("slot", "home")
    status, ctype, payload = await svc.handle_recommend(orjson.dumps(body), JSON, None)
    assert status == 200, payload
    return orjson.loads(payload)


def candidates(svc: EdgeNode, n: int = 200) -> list[str]:
    return svc.ranker.bundle.item_ids[:n]


def test_session_vector_in_valkey_changes_ranking(registry_dir, any_redis, any_store):
    # a generous read budget: this test is about what a read vector does, not the budget (a 50 ms first read
    # on a loaded CI machine once timed out and served no vector)
    svc = make_service(registry_dir, any_store.url, bandit={"explore_budget": 0.0}, store={"timeout_ms": 1000.0})
    b = svc.ranker.bundle
    cands = candidates(svc)
    # A session that looked at items 150..159: its vector points at them.
    vec = b.item_vectors[150:160].mean(axis=0)
    vec = (vec / np.linalg.norm(vec)).astype("<f4")
    any_redis.hset(session_key("default", "s-with-vec"), mapping={"vec": vec.tobytes(),
                                                                    "updated_ms": int(time.time() * 1000)})

    async def run():
        await svc.start()
        try:
            plain = await recommend(svc, session_id="s-none", candidates=cands, k=10)
            pers = await recommend(svc, session_id="s-with-vec", candidates=cands, k=10)
        finally:
            await svc.stop()
        return plain, pers

    plain, pers = asyncio.run(run())
    rows = {item_id: i for i, item_id in enumerate(b.item_ids)}

    def mean_sim(resp):
        idx = [rows[it["item_id"]] for it in resp["items"]]
        return float((b.item_vectors[idx] @ vec).mean())

    assert "no_session_vector" in plain["route_reasons"]
    assert "no_session_vector" not in pers["route_reasons"]
    assert [i["item_id"] for i in plain["items"]] != [i["item_id"] for i in pers["items"]]
    assert mean_sim(pers) > mean_sim(plain) + 0.05
    assert plain["degraded"] is False and pers["degraded"] is False


def test_bandit_counts_from_valkey_move_an_item_up(registry_dir, any_redis, any_store):
    svc = make_service(registry_dir, any_store.url, bandit={"explore_budget": 0.0})
    cands = candidates(svc, 100)
    winner = cands[-1]
    any_redis.hset(bandit_key("default", "home"), mapping={clicks_field(winner): 900, imps_field(winner): 1000})

    async def run():
        await svc.start()
        try:
            before = await recommend(svc, session_id="s1", candidates=cands, k=5)
            for _ in range(50):   # the refresher re-reads every 0.1 s once the slot is known
                await asyncio.sleep(0.05)
                if svc.ranker.counts.get("default", "home").clicks.any():
                    break
            after = await recommend(svc, session_id="s1", candidates=cands, k=5)
        finally:
            await svc.stop()
        return before, after

    before, after = asyncio.run(run())
    assert winner not in [i["item_id"] for i in before["items"]]
    assert after["items"][0]["item_id"] == winner


def test_store_stopped_mid_run_degrades_then_recovers(registry_dir, store_redis, fresh_valkey):
    svc = make_service(registry_dir, fresh_valkey.url)
    cands = candidates(svc, 50)

    async def run():
        await svc.start()
        out = {}
        try:
            out["up"] = await recommend(svc, session_id="a", candidates=cands)
            fresh_valkey.kill()
            # New sessions need the store: every answer is still a 200 with items, flagged degraded.
            out["down"] = [await recommend(svc, session_id=f"down-{i}", candidates=cands) for i in range(5)]
            out["down_pool"] = await recommend(svc, session_id="down-pool")
            fresh_valkey.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                resp = await recommend(svc, session_id=f"after-{time.monotonic()}", candidates=cands)
                if not resp["degraded"]:
                    out["recovered"] = resp
                    break
        finally:
            await svc.stop()
        return out

    out = asyncio.run(run())
    assert out["up"]["degraded"] is False
    for resp in out["down"] + [out["down_pool"]]:
        assert resp["degraded"] is True
        assert len(resp["items"]) == 10
    assert svc.health.errors >= 1
    assert "recovered" in out, "edge did not recover after valkey restarted"
    assert out["recovered"]["degraded"] is False


def test_store_none_is_not_degraded(registry_dir):
    svc = make_service(registry_dir, "none")
    resp = asyncio.run(recommend(svc, session_id="x"))
    assert resp["degraded"] is False and len(resp["items"]) == 10


@pytest.mark.parametrize("k", [1, 10, 100])
def test_k_items_from_the_pool_never_empty(registry_dir, k):
    svc = make_service(registry_dir, "none")
    resp = asyncio.run(recommend(svc, session_id="x", k=k, context={"channel": "email"}))
    ids = [i["item_id"] for i in resp["items"]]
    assert len(ids) == k and len(set(ids)) == k


def test_unknown_candidates_are_scored_not_rejected(registry_dir):
    svc = make_service(registry_dir, "none")
    known = candidates(svc, 20)
    resp = asyncio.run(recommend(svc, session_id="x", k=30, candidates=known + ["NEW-1", "NEW-2", "NEW-1"]))
    assert resp["unknown_candidates"] == 2          # duplicates are collapsed
    assert len(resp["items"]) == 22
    assert {"NEW-1", "NEW-2"} <= {i["item_id"] for i in resp["items"]}
    assert "cold_items" in resp["route_reasons"]
    all_known = asyncio.run(recommend(svc, session_id="x", k=30, candidates=known))
    assert all_known["confidence"] > resp["confidence"]


def test_a_cached_session_is_never_served_older_than_max_stale(registry_dir, store_redis, fresh_valkey):
    """edge.cache.session_max_stale_s bounds the staleness of a served session vector, also while the
    store is down (it used to serve the stale vector for as long as the entry stayed in the cache)."""
    now = [0.0]                                        # the session cache's clock: moved by the test, not slept
    svc = make_service(registry_dir, fresh_valkey.url, clock=lambda: now[0],
                       cache={"session_ttl_s": 0.05, "session_max_stale_s": 0.3},
                       store={"timeout_ms": 1000.0})      # the first read must not time out on a loaded machine
    vec = svc.ranker.bundle.item_vectors[:5].mean(axis=0)
    vec = (vec / np.linalg.norm(vec)).astype("<f4")
    store_redis.hset(session_key("default", "stale"), mapping={"vec": vec.tobytes(),
                                                               "updated_ms": int(time.time() * 1000)})

    async def run():
        await svc.start()
        try:
            first = await recommend(svc, session_id="stale")
            fresh_valkey.kill()
            now[0] = 0.15                              # stale (> ttl) but within max_stale: still served
            within = await recommend(svc, session_id="stale")
            for _ in range(500):                       # its revalidation read finds the store down
                if not svc.health.up:
                    break
                await asyncio.sleep(0.01)
            now[0] = 0.45                              # now older than max_stale
            beyond = await recommend(svc, session_id="stale")
        finally:
            await svc.stop()
        return first, within, beyond

    first, within, beyond = asyncio.run(run())
    assert "no_session_vector" not in first["route_reasons"]
    assert "no_session_vector" not in within["route_reasons"]
    assert "no_session_vector" in beyond["route_reasons"] and beyond["degraded"] is True


def test_counts_of_every_tracked_slot_are_refreshed_in_one_pass(registry_dir, any_redis, any_store):
    from strata.edge.bandit_refresh import BanditRefresher

    svc = make_service(registry_dir, any_store.url, bandit={"slots": {"default": ["home"]}, "recent_slots": 4})
    ids = svc.ranker.bundle.item_ids
    for slot, item in (("home", ids[0]), ("pdp", ids[1]), ("cart", ids[2])):
        any_redis.hset(bandit_key("default", slot), mapping={clicks_field(item): 7, imps_field(item): 70})
    counts = svc.ranker.counts
    counts.get("default", "pdp")                       # requested by clients: tracked in the LRU
    counts.get("default", "cart")
    for i in range(50):                                # junk slot names cannot push the configured one out
        counts.get("default", f"junk-{i}")
    counts.get("default", "pdp")
    refresher = BanditRefresher(svc.slot, svc.store, svc.health)

    async def run():
        try:
            return await refresher.refresh_once()
        finally:
            await svc.store.close()

    assert asyncio.run(run()) == 5                     # home (configured) + 4 recent slots
    assert counts.get("default", "home").clicks[0] == 7
    assert counts.get("default", "pdp").imps[1] == 70
    assert ("default", "cart") not in counts.tracked()   # evicted by junk, then not re-added
    assert len(counts.tracked()) == 5


def _hmget_calls(r) -> int:
    return command_calls(r, "hmget")


def test_without_consent_the_edge_reads_no_personal_data(registry_dir, any_redis, any_store):
    """Consent is a guardrail at the edge: no session read (PoP cache or store), a context-only answer that says
    so, and a consented request for the same session is not answered from that answer's cache entry."""
    svc = make_service(registry_dir, any_store.url, store={"timeout_ms": 1000.0}, cache={"response_size": 1000})
    vec = svc.ranker.bundle.item_vectors[150:160].mean(axis=0)
    any_redis.hset(session_key("default", "s-c"), mapping={"vec": (vec / np.linalg.norm(vec)).astype("<f4").tobytes(),
                                                             "updated_ms": int(time.time() * 1000)})
    cands = candidates(svc, 50)

    async def run():
        await svc.start()
        try:
            before = _hmget_calls(any_redis), len(svc.sessions)
            refused = await recommend(svc, session_id="s-c", candidates=cands, k=5, context={"consent": False})
            after = _hmget_calls(any_redis), len(svc.sessions)
            given = await recommend(svc, session_id="s-c", candidates=cands, k=5)
            return before, refused, after, given, _hmget_calls(any_redis)
        finally:
            await svc.stop()

    before, refused, after, given, calls = asyncio.run(run())
    assert after == before                              # nothing read, nothing cached for the session
    assert refused["route_reasons"][0] == "no_consent_context_only" and "no_session_vector" in refused["route_reasons"]
    assert given["timing"]["cache"] == "miss" and calls == before[0] + 1
    assert "no_session_vector" not in given["route_reasons"] and "no_consent_context_only" not in given["route_reasons"]


def test_an_invalidation_published_once_start_returns_reaches_the_edge(registry_dir, fresh_valkey):
    """``start`` returns once the store confirmed the invalidation subscription: a session invalidated from then
    on drops its cached vector and answers (before, start returned first and such a message was lost: the
    session's cached answers were served until their TTL)."""
    import msgpack

    from strata.shared.keys import INVALIDATION_CHANNEL

    svc = make_service(registry_dir, fresh_valkey.url)
    dropped: list[tuple[str, str]] = []
    invalidate = svc.invalidate_session
    svc.invalidations.on_session = lambda t, s: (dropped.append((t, s)), invalidate(t, s))

    async def run() -> None:
        await svc.start()
        try:
            assert svc.invalidations.subscribed.is_set()
            r = fresh_valkey.client()
            try:
                r.publish(INVALIDATION_CHANNEL, msgpack.packb([["default", "s-published-once"]]))
            finally:
                r.close()
            for _ in range(100):
                if dropped:
                    break
                await asyncio.sleep(0.01)
            assert dropped == [("default", "s-published-once")]
        finally:
            await svc.stop()

    asyncio.run(run())


def test_invalidations_resume_after_the_store_restarts(fresh_valkey):
    """The subscriber's client has no retries of its own (``shared.online_store.client``): the listener's loop
    reconnects and subscribes again after an outage."""
    import msgpack

    from strata.edge.invalidation import InvalidationListener
    from strata.shared.keys import INVALIDATION_CHANNEL

    got: list[tuple[str, str]] = []

    async def publish_until_seen(pair: tuple[str, str]) -> None:
        r = fresh_valkey.client()
        try:
            for _ in range(200):                   # publishes before the (re)subscription are lost: repeat
                r.publish(INVALIDATION_CHANNEL, msgpack.packb([list(pair)]))
                await asyncio.sleep(0.05)
                if pair in got:
                    return
        finally:
            r.close()
        raise AssertionError(f"{pair} never arrived; got {got}")

    async def run() -> None:
        lis = InvalidationListener(fresh_valkey.url, lambda t, s: got.append((t, s)))
        task = asyncio.create_task(lis.run())
        try:
            await asyncio.wait_for(lis.subscribed.wait(), 10)
            await publish_until_seen(("t", "before"))
            fresh_valkey.stop()
            await asyncio.sleep(0.5)
            fresh_valkey.start()
            await publish_until_seen(("t", "after"))
            assert lis.errors >= 1
        finally:
            task.cancel()
            await asyncio.wait((task,), timeout=5)

    asyncio.run(run())
