"""Tier 2 end to end against a real Tansu broker and a real valkey-server: ingest -> log -> processor ->
store, dead-letter reasons, the click->impression join, triggers and invalidation messages."""

from __future__ import annotations

import asyncio
import time

import msgpack
import numpy as np
import pytest

from strata.shared import keys as K
from strata.shared.online_store.client import connect
from strata.shared.ranking.session_update import decode_state, session_vec
from strata.streaming.catalog import load_catalog
from strata.streaming.effects import profile_summary
from tests.integration.streaming_kit import (
    expected_state,
    ingest,
    processing,
    read_topic,
    streaming_settings,
    wait_until,
)


@pytest.fixture(scope="module")
def catalog(registry_dir):
    return load_catalog(registry_dir, "edge-scorer")


def _ev(i: int, etype: str, session: str = "s1", user: str = "u1", ts: int | None = None, **kw) -> dict:
    return {"event_id": f"{session}-{i}", "type": etype, "user_id": user, "session_id": session,
            "ts": ts if ts is not None else int(time.time() * 1000), "channel": "web", **kw}


def test_events_become_vectors_profiles_and_counts(tansu_proc, fresh_valkey, registry_dir, catalog) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    items = list(catalog.index)[:6]
    t0 = int(time.time() * 1000) - 10_000        # event times in the past (decay never runs ahead of the clock)
    events = [_ev(0, "view", item_id=items[0], ts=t0), _ev(1, "view", item_id=items[1], ts=t0 + 1000),
              _ev(2, "impression", impression_id="imp-1", items=items[:3], explored=[False, True, False],
                  alpha=[1.0, 2.0, 3.0], beta=[9.0, 8.0, 7.0], tier="edge", model_version="1.0.0", ts=t0 + 1500),
              _ev(3, "click", item_id=items[1], impression_id="imp-1", ts=t0 + 2000),
              _ev(4, "click", item_id=items[1], impression_id="imp-1", ts=t0 + 2100),   # same item: counted once
              _ev(5, "add_to_cart", item_id=items[1], ts=t0 + 3000),
              _ev(6, "purchase", item_id=items[1], quantity=2, price=12.5, ts=t0 + 4000),
              _ev(7, "preference", categories=["garden"], brands=["Acme"], ts=t0 + 5000,
                  consent={"personalization": True, "marketing": False}),
              _ev(0, "view", item_id=items[0], ts=t0),                                  # client retry
              _ev(8, "view", session="s2", user="u2", item_id=items[4], ts=t0)]

    async def go() -> None:
        r = connect(fresh_valkey.url, 2.0, blocking_reads=True)     # one node or a cluster: PUBLISH reaches any
        assert r is not None
        sub = r.pubsub()
        await sub.subscribe(K.INVALIDATION_CHANNEL)
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", json={"events": events[:5]})
            assert resp.status_code == 202 and resp.json() == {"accepted": 5, "rejected": []}
            resp = await client.post("/v1/events", content=msgpack.packb({"events": events[5:]}),
                                     headers={"content-type": "application/msgpack"})
            assert resp.status_code == 202
            assert msgpack.unpackb(resp.content) == {"accepted": 5, "rejected": []}
        async with processing(cfg, catalog) as proc:
            await wait_until(lambda: proc.metrics.applied + proc.metrics.duplicates == 10, what="10 events")
            assert (proc.metrics.applied, proc.metrics.duplicates, proc.metrics.dead) == (9, 1, 0)
            body = proc.metrics.instruments.exposition().decode()
            assert "strata_processor_freshness_seconds_count 9.0" in body
            assert 'strata_processor_duplicates_skipped_total{reason="event_id"} 1.0' in body
            triggers = await read_topic(cfg.broker, cfg.topics.triggers, 1)
            assert triggers[0]["type"] == "post_purchase" and triggers[0]["session_id"] == "s1"
        msgs = set()
        deadline = time.monotonic() + 5
        while len(msgs) < 2 and time.monotonic() < deadline:
            m = await sub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if m:
                msgs.update(tuple(pair) for pair in msgpack.unpackb(m["data"]))
        assert msgs == {("default", "s1"), ("default", "s2")}
        await sub.aclose()
        await r.aclose()

    asyncio.run(go())
    store = fresh_valkey.client()
    expect = expected_state(events, catalog, cfg)
    for (tenant, sid), state in expect["sessions"].items():
        raw = store.hgetall(K.session_key(tenant, sid))
        got = decode_state(raw[b"st"]).state
        assert got.acc.tobytes() == state.acc.tobytes() and got.ref_ms == state.ref_ms
        ttl_ms = cfg.session_ttl_s * 1000          # kept at least ttl after the last write, at most 1.1x
        assert ttl_ms - 120_000 < store.pttl(K.session_key(tenant, sid)) <= 1.1 * ttl_ms
        assert raw[b"vec"] == session_vec(state).astype("<f4").tobytes()
        assert np.frombuffer(raw[b"vec"], "<f4").shape == (16,)
    counts = store.hgetall(K.bandit_key("default", "home"))
    assert counts == {b"n:" + i.encode(): b"1" for i in items[:3]} | {b"c:" + items[1].encode(): b"1"}
    prof = profile_summary(store.hgetall(K.profile_key("default", "u1")), t0)
    assert (prof["views_7d"], prof["views_30d"], prof["purchases_30d"], prof["orders"]) == (2, 2, 1, 1)
    assert prof["avg_order_value"] == 25.0
    assert prof["consent"] == {"personalization": True, "marketing": False}
    assert prof["categories"]["garden"] >= 10 and prof["brands"]["Acme"] >= 10
    assert prof["categories"][catalog.category(items[1])] >= 1 + 1 + 3 + 5   # view, click (joined), cart, buy
    assert abs(float(np.linalg.norm(prof["long_term"])) - 1.0) < 1e-9
    assert store.zcard(K.CART_DEADLINES_KEY) == 0          # the purchase cleared the cart deadline


def test_rejected_events_go_to_the_dead_letter_topic_with_reasons(tansu_proc, fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    good = _ev(1, "view", item_id="SKU-000001")
    bad = [dict(good, event_id="b1", channel="fax"), {"type": "view"}, dict(good, event_id="b3", ts="yesterday"),
           "not-an-event"]

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", json={"events": [good, *bad]})
            assert resp.status_code == 202
            assert resp.json() == {"accepted": 1, "rejected": [
                {"index": 1, "field": "channel", "reason": "must be one of ['web', 'app', 'email', 'sms', 'pos'], "
                                                           "got 'fax'"},
                {"index": 2, "field": "event_id", "reason": "is required"},
                {"index": 3, "field": "ts", "reason": "must be epoch ms or an RFC 3339 time, got 'yesterday'"},
                {"index": 4, "field": "body", "reason": "event must be an object, got str"}]}
            resp = await client.post("/v1/events", json=bad[0])          # nothing valid: 422, still dead-lettered
            assert resp.status_code == 422
            body = resp.json()
            assert body["error"]["code"] == "events_rejected" and body["error"]["field"] == "events[0].channel"
            assert body["accepted"] == 0 and body["rejected"][0]["field"] == "channel"
        dlq = await read_topic(cfg.broker, cfg.topics.dead_letter, 5)
        assert [(d["index"], d["field"]) for d in dlq] == [(1, "channel"), (2, "event_id"), (3, "ts"), (4, "body"),
                                                           (0, "channel")]
        assert dlq[0]["raw"] == bad[0] and dlq[3]["raw"] == "not-an-event"
        assert all(d["reason"] for d in dlq)

    asyncio.run(go())


@pytest.mark.parametrize(("body", "ctype", "status", "field", "reason"), [
    (b"{nope", "application/json", 400, "body", "body is not valid JSON"),
    (b"[]", "application/json", 400, "body", "body must be an event object or"),
    (b'{"events": []}', "application/json", 422, "events", "must hold at least one event"),
    (b'{"events": {}}', "application/json", 422, "events", "must be a list of events, got dict"),
    (b'{"events": [], "x": 1}', "application/json", 422, "body", "a batch has only 'events'"),
    (b"{}", "text/plain", 415, "Content-Type", "Content-Type 'text/plain' is not supported"),
])
def test_bad_bodies_name_field_and_reason(tansu_proc, fresh_valkey, registry_dir, body, ctype, status, field,
                                          reason) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", content=body, headers={"content-type": ctype})
            assert resp.status_code == status, resp.text
            err = resp.json()["error"]
            assert err["field"] == field and reason in err["reason"]

    asyncio.run(go())


def test_too_many_events_is_413(tansu_proc, fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir, max_events=3)

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", json={"events": [_ev(i, "view", item_id="x") for i in range(4)]})
            assert resp.status_code == 413
            assert resp.json()["error"] == {"code": "payload_too_large", "field": "events",
                                            "reason": "at most 3 events per request, got at least 4"}

    asyncio.run(go())


def test_abandoned_cart_trigger(tansu_proc, fresh_valkey, registry_dir, catalog) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir, abandoned_cart_s=0.5)
    now = int(time.time() * 1000)
    events = [_ev(1, "add_to_cart", session="cart-a", item_id="SKU-000001", ts=now),
              _ev(2, "add_to_cart", session="cart-b", user="u2", item_id="SKU-000002", ts=now),
              _ev(3, "purchase", session="cart-b", user="u2", item_id="SKU-000002", quantity=1, price=1.0, ts=now)]

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            assert (await client.post("/v1/events", json={"events": events})).status_code == 202
        async with processing(cfg, catalog):
            got = await read_topic(cfg.broker, cfg.topics.triggers, 2)
        assert sorted((t["type"], t["session_id"]) for t in got) == [("abandoned_cart", "cart-a"),
                                                                     ("post_purchase", "cart-b")]
        cart = next(t for t in got if t["type"] == "abandoned_cart")
        assert cart["trigger_id"] == f"abandoned_cart:default:cart-a:{now + 500}" and cart["user_id"] == "u1"

    asyncio.run(go())
