"""The edge logs an ``impression`` event per answer it serves, on the real Tansu broker, and the real
processor counts them (``n:`` fields); with the broker down it keeps answering and counts what it dropped."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from strata.deploy.local import free_port
from strata.deploy.tansu import TansuProcess
from strata.edge.node import EdgeNode
from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.shared.contracts.api import parse_event
from strata.shared.contracts.event_records import decode_event
from strata.streaming.catalog import load_catalog
from strata.streaming.topics import ensure_topics
from tests.integration.streaming_kit import processing, streaming_settings, wait_until

JSON = b"application/json"


def _node(registry_dir, store: str, **impressions) -> EdgeNode:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": store, "timeout_ms": 200.0},
                                        "impressions": {"linger_ms": 10.0, **impressions}}))
    node.load_model()
    return node


async def _ask(node: EdgeNode, body: dict) -> dict:
    status, _, raw = await node.handle_recommend(orjson.dumps(body), JSON, None)
    assert status == 200, raw
    return orjson.loads(raw)


async def _read_events(broker: str, topic: str, n: int, timeout_s: float = 20.0) -> list[tuple[bytes, dict]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes, dict]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                out += [(m.key, decode_event(m.value)) for m in msgs]
    finally:
        await consumer.stop()
    assert len(out) == n, f"{topic}: {len(out)} records, expected {n}"
    return out


def test_every_answer_becomes_an_impression_event_that_the_processor_counts(tansu_proc, fresh_valkey,
                                                                            registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    given = list(catalog.index)[:8]
    node = _node(registry_dir, fresh_valkey.url, broker=tansu_proc.bootstrap, topic=cfg.topics.events)
    bodies = [{"user_id": "u-a", "session_id": "s-a", "k": 5},
              {"user_id": "u-b", "session_id": "s-b", "slot": "pdp", "k": 3, "candidates": given,
               "context": {"channel": "app"}},
              {"user_id": "u-a", "session_id": "s-a", "k": 5}]          # the same body: an exact-cache hit

    async def go() -> None:
        await ensure_topics(cfg.broker, cfg.topics)
        await node.start()
        try:
            answers = [await _ask(node, b) for b in bodies]
            assert answers[2]["timing"]["cache"] == "hit"
            await wait_until(lambda: node.impressions.logged == 3, what="3 impressions acknowledged")
            records = await _read_events(cfg.broker, cfg.topics.events, 3)
            by_id = {ev["impression_id"]: (key, ev) for key, ev in records}
            assert len(by_id) == 3
            for body, ans in zip(bodies, answers, strict=True):
                key, raw = by_id[ans["impression_id"]]
                ev = parse_event(raw)                      # the one validator accepts it
                assert key == f"default\x1f{body['session_id']}".encode()    # per-session order on the log
                assert (ev.type, ev.event_id, ev.tier, ev.model_version) == (
                    "impression", ans["impression_id"], "edge", ans["model_version"])
                assert (ev.user_id, ev.session_id, ev.slot) == (body["user_id"], body["session_id"],
                                                                body.get("slot", "home"))
                assert ev.channel == body.get("context", {}).get("channel", "web")
                assert ev.items == [it["item_id"] for it in ans["items"]]
                assert ev.explored == [it["explored"] for it in ans["items"]]
                # no counts in the store yet: the posterior is the model's prior worth n0 impressions
                n0 = node.cfg.bandit.n0
                assert all(abs(a + b - n0) < 1e-3 and a > 0 and b > 0
                           for a, b in zip(ev.alpha, ev.beta, strict=True))
            assert b"strata_edge_impressions_logged_total 3.0" in node.exposition()
            async with processing(cfg, catalog):
                want: dict[tuple[str, str], int] = {}
                for body, ans in zip(bodies, answers, strict=True):
                    for it in ans["items"]:
                        k = (body.get("slot", "home"), it["item_id"])
                        want[k] = want.get(k, 0) + 1
                r = fresh_valkey.client()
                try:
                    def counted() -> dict:
                        return {(slot, f.decode()[2:]): int(v) for slot in ("home", "pdp")
                                for f, v in r.hgetall(K.bandit_key("default", slot)).items()
                                if f.startswith(b"n:")}
                    await wait_until(lambda: counted() == want, what="n: counts of the logged impressions")
                finally:
                    r.close()
        finally:
            await node.stop()

    asyncio.run(go())


def test_broker_down_the_edge_keeps_answering_and_counts_what_it_dropped(registry_dir) -> None:
    node = _node(registry_dir, "none", broker=f"127.0.0.1:{free_port()}", buffer=5, timeout_s=0.5)

    async def go() -> None:
        await node.start()
        try:
            for i in range(20):
                ans = await _ask(node, {"user_id": "u", "session_id": f"s{i}", "k": 4})
                assert len(ans["items"]) == 4
            assert node.impressions.dropped == 15 and len(node.impressions.buffer) == 5
            metrics = node.exposition()
            assert b"strata_edge_impressions_dropped_total 15.0" in metrics
            assert b"strata_edge_impression_log_up 0.0" in metrics
        finally:
            await node.stop()
        assert node.impressions.dropped == 20 and not node.impressions.buffer    # none lost uncounted at stop

    asyncio.run(go())


@pytest.mark.timeout(90)
def test_broker_killed_mid_run_drops_are_counted_and_logging_resumes(registry_dir) -> None:
    broker = TansuProcess()
    broker.start()
    node = _node(registry_dir, "none", broker=broker.bootstrap, timeout_s=0.5)

    async def go() -> None:
        await node.start()
        try:
            await _ask(node, {"user_id": "u", "session_id": "s-before", "k": 3})
            await wait_until(lambda: node.impressions.logged == 1, what="the first impression logged")
            broker.kill()
            for i in range(10):                               # answered while the log is gone
                assert len((await _ask(node, {"user_id": "u", "session_id": f"s-down{i}", "k": 3}))["items"]) == 3
            await wait_until(lambda: node.impressions.dropped >= 1, what="drops counted")
            broker.start()                                    # the same port: the producer reconnects by itself
            logged = node.impressions.logged

            async def resumed() -> bool:
                await _ask(node, {"user_id": "u", "session_id": "s-after", "k": 3})
                return node.impressions.logged > logged
            deadline = time.monotonic() + 30
            while not await resumed():
                assert time.monotonic() < deadline, "impression logging did not resume after the broker restart"
                await asyncio.sleep(0.2)
            assert node.impressions.logged + node.impressions.dropped + len(node.impressions.buffer) >= 12
        finally:
            await node.stop()

    try:
        asyncio.run(go())
    finally:
        broker.stop()
