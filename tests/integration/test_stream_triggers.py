"""The trigger relay on real engines (review findings 9 and 18): ids cannot break a cart member, a poisoned
outbox entry is dead-lettered once and never blocks or repeats the entries around it, and the relay takes the
outbox in batches far larger than its old 200 per tick."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from aiokafka import AIOKafkaProducer

from strata.shared import keys as K
from strata.streaming.processor_metrics import ProcessorMetrics
from strata.streaming.store import StreamStore
from strata.streaming.topics import ensure_topics
from strata.streaming.triggers import TriggerRelay
from tests.integration.streaming_kit import ingest, read_topic, streaming_settings


def _purchase(i: int) -> bytes:
    return orjson.dumps({"trigger_id": f"post_purchase:default:p{i}", "type": "post_purchase", "tenant": "default",
                         "user_id": "u", "session_id": "s", "ts": 1, "item_id": "SKU-000001", "quantity": 1,
                         "price": 2.5})


async def _relay(cfg):
    await ensure_topics(cfg.broker, cfg.topics)
    producer = AIOKafkaProducer(bootstrap_servers=cfg.broker, acks="all")
    await producer.start()
    store = StreamStore(cfg.store)
    relay = TriggerRelay(store.r, producer, cfg.topics.triggers, ProcessorMetrics())
    relay.dead_letter_topic = cfg.topics.dead_letter
    return relay, producer, store


def test_a_poisoned_outbox_entry_is_dead_lettered_once(tansu_proc, fresh_valkey, registry_dir) -> None:
    """Probes b1_3 and b1_3b: a cart member split on ``\\x1f`` raised on every tick, so no trigger was published
    again, or the purchase queued before it was published ~10 times a second forever."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    r = fresh_valkey.client()
    r.rpush(K.TRIGGER_OUTBOX_KEY, _purchase(1),
            orjson.dumps({"member": "default\x1fs\x1fx\x1fatk3", "deadline": "1800000"}),  # four fields: poison
            b"{not json", _purchase(2))

    async def go() -> None:
        relay, producer, store = await _relay(cfg)
        try:
            for _ in range(5):                        # the relay's run loop catches and retries: as 5 ticks
                with contextlib.suppress(Exception):
                    await relay.once()
        finally:
            await producer.stop()
            await store.close()
        counters = relay.metrics.instruments.counters
        assert counters.get(("triggers_sent_total", ("post_purchase",))) == 2      # each once, none repeated
        assert counters.get(("triggers_dead_lettered_total", ())) == 2
        sent = await read_topic(cfg.broker, cfg.topics.triggers, 2)
        assert [m["trigger_id"] for m in sent] == ["post_purchase:default:p1", "post_purchase:default:p2"]
        dead = await read_topic(cfg.broker, cfg.topics.dead_letter, 2)
        assert [d["source"] for d in dead] == ["trigger-relay"] * 2 and all(d["reason"] for d in dead)
        assert r.llen(K.TRIGGER_OUTBOX_KEY) == 0

    try:
        asyncio.run(go())
    finally:
        r.close()


def test_ids_with_control_characters_never_reach_a_trigger(tansu_proc, fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    ev = {"event_id": "c1", "type": "add_to_cart", "user_id": "atk3", "session_id": "s\x1fx",
          "ts": int(time.time() * 1000), "channel": "web", "item_id": "SKU-000001"}

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", json=ev)
            assert resp.status_code == 422 and resp.json()["error"]["field"] == "events[0].session_id"

    asyncio.run(go())


def test_the_relay_takes_the_outbox_in_large_batches(tansu_proc, fresh_valkey, registry_dir) -> None:
    """Probe a11: 200 entries per 0.2 s tick (<= 1,000/s) left 20k purchases' triggers up to 22 s late. One pass
    now publishes 2000 entries with one produce batch, and the loop goes on at once while the
    outbox is full (the drain rate is measured in docs/operations.md)."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    r = fresh_valkey.client()
    r.rpush(K.TRIGGER_OUTBOX_KEY, *[_purchase(i) for i in range(5000)])

    async def go() -> None:
        relay, producer, store = await _relay(cfg)
        try:
            assert await relay.once() == 2000
            task = asyncio.create_task(relay.run())
            deadline = time.monotonic() + 30
            while r.llen(K.TRIGGER_OUTBOX_KEY) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await producer.stop()
            await store.close()
        sent = await read_topic(cfg.broker, cfg.topics.triggers, 5000)
        assert sorted(int(m["trigger_id"].rsplit("p", 1)[1]) for m in sent) == list(range(5000))

    try:
        asyncio.run(go())
    finally:
        r.close()
