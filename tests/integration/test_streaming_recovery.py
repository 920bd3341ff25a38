"""Tier 2 under failure, on real engines: broker down at ingest (503 + Retry-After, then recovery without a
restart); a processor killed between its store write and its commit; a consumer joining mid-stream; and
kill -9 of the processor process at random points, restarted several times."""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest
import yaml

from strata.deploy.local import ManagedProcess, strata_command
from strata.deploy.tansu import TansuProcess
from strata.shared import keys as K
from strata.streaming.catalog import load_catalog
from strata.streaming.effects import Record
from strata.streaming.processor import StreamProcessor, to_record
from tests.integration.streaming_kit import (
    assert_store_matches,
    event_stream,
    ingest,
    log_ends,
    post_all,
    processing,
    streaming_settings,
    wait_until,
)


@pytest.fixture(scope="module")
def catalog(registry_dir):
    return load_catalog(registry_dir, "edge-scorer")


def test_broker_down_is_503_with_retry_after_then_recovers(fresh_valkey, registry_dir) -> None:
    broker = TansuProcess().start()
    try:
        cfg = streaming_settings(broker.bootstrap, fresh_valkey.url, registry_dir, produce_timeout_s=1.0)
        ev = {"event_id": "e1", "type": "view", "user_id": "u", "session_id": "s", "ts": int(time.time() * 1000), "channel": "web",
              "item_id": "SKU-000001"}

        async def go() -> None:
            async with ingest(cfg) as (client, svc):
                assert (await client.post("/v1/events", json=ev)).status_code == 202
                broker.stop()
                resp = await client.post("/v1/events", json=ev)
                assert resp.status_code == 503, resp.text
                assert resp.headers["retry-after"] == "2"
                body = resp.json()
                assert body["retriable"] is True and body["error"]["code"] == "broker_unavailable"
                assert body["error"]["field"] == "broker" and "accepted" not in body
                assert (await client.get("/readyz")).status_code == 200   # connected; the broker just answers not
                broker.start()                                            # same port, empty (memory storage)
                deadline = time.monotonic() + 30
                status = 503
                while status == 503 and time.monotonic() < deadline:
                    status = (await client.post("/v1/events", json=dict(ev, event_id="e2"))).status_code
                assert status == 202
                metrics = (await client.get("/metrics")).text
                assert 'strata_ingest_requests_total{status="503"}' in metrics

        asyncio.run(go())
    finally:
        broker.stop()


def test_kill_between_store_write_and_commit_changes_nothing(tansu_proc, any_store, registry_dir,
                                                             catalog) -> None:
    """Apply a fetched batch to the store and 'die' before committing; the next processor resumes after the
    store's watermarks (not the committed offsets) and applies none of them again."""
    cfg = streaming_settings(tansu_proc.bootstrap, any_store.url, registry_dir)
    events = event_stream(catalog, seed=11, n_sessions=10, per_session=20)

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            await post_all(client, events)
        first = StreamProcessor(cfg, catalog)
        await first.start()
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while len(got) < len(events) and time.monotonic() < deadline:
            batches = await first.consumer.getmany(timeout_ms=200)
            got += [to_record(tp.topic, tp.partition, m.offset, m.value) for tp, ms in batches.items() for m in ms]
        assert len(got) == len(events)
        await first.apply(got)             # the store writes succeed ...
        await first.close()                # ... and the process is gone before it commits
        ends = await log_ends(cfg.broker, cfg.topics.events, len(events))
        async with processing(cfg, catalog) as second:
            deadline = time.monotonic() + 30
            positions: dict = {}
            while time.monotonic() < deadline:          # just after the watermarks, once assigned
                positions = {f"{tp.topic}:{tp.partition}": await second.consumer.position(tp) - 1
                             for tp in second.consumer.assignment()}
                if len(positions) == 4 and {f: p for f, p in positions.items() if f in ends} == ends:
                    break
                await asyncio.sleep(0.1)
            assert {f: p for f, p in positions.items() if f in ends} == ends
            await asyncio.sleep(1.0)
            assert second.metrics.applied == 0 and second.metrics.dead == 0
        assert first.metrics.applied + first.metrics.duplicates == len(events)

    asyncio.run(go())
    assert_store_matches(any_store.client(), events, catalog, cfg)


def test_consumer_joining_mid_stream_loses_and_doubles_nothing(tansu_proc, fresh_valkey, registry_dir,
                                                               catalog) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir, max_batch=20)
    events = event_stream(catalog, seed=12, n_sessions=40, per_session=25)

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            await post_all(client, events[: len(events) // 2])
            async with processing(cfg, catalog) as a:
                await wait_until(lambda: a.metrics.applied > 100, what="the first consumer to start")
                async with processing(cfg, catalog) as b:
                    await post_all(client, events[len(events) // 2:])
                    ends = await log_ends(cfg.broker, cfg.topics.events, len(events))
                    store = fresh_valkey.client()
                    await wait_until(lambda: {k.decode(): int(v) for k, v in
                                              store.hgetall(K.WATERMARK_KEY).items()} == ends,
                                     timeout_s=60, what="every partition applied to its end")
                    assert b.metrics.applied > 0, "the second consumer never got a partition"

                    def total() -> int:
                        return a.metrics.applied + b.metrics.applied + a.metrics.duplicates + b.metrics.duplicates

                    # The watermark is visible in the store (read here with a sync client) before the
                    # processor's coroutine has resumed from its write and counted the batch: let it.
                    await wait_until(lambda: total() >= len(events), timeout_s=10, what="every event counted")
                    assert total() == len(events)

    asyncio.run(go())
    assert_store_matches(fresh_valkey.client(), events, catalog, cfg)


def test_kill_9_at_random_points_then_exact_counts_and_replay_equal_vectors(tansu_proc, any_store, registry_dir,
                                                                            catalog, tmp_path) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, any_store.url, registry_dir, max_batch=25)
    events = event_stream(catalog, seed=13, n_sessions=60, per_session=40)
    conf = tmp_path / "strata.yaml"
    conf.write_text(yaml.safe_dump({"log_level": "WARNING", "streaming": cfg.model_dump(mode="json")}))
    argv = [*strata_command(), "streaming", "process", "--config", str(conf)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(13)
    store = any_store.client()

    async def produce() -> None:
        async with ingest(cfg) as (client, _):
            await post_all(client, events)

    asyncio.run(produce())
    ends = asyncio.run(log_ends(cfg.broker, cfg.topics.events, len(events)))
    kills = 0
    for _ in range(4):
        proc = ManagedProcess("processor", argv, env=env, log_path=tmp_path / "processor.log").start()
        time.sleep(rng.uniform(3.0, 6.0))   # start-up and group join take ~3 s here; then batches of 25 flow
        proc.kill()                         # SIGKILL: wherever it is
        kills += 1
    applied_before = {k.decode(): int(v) for k, v in store.hgetall(K.WATERMARK_KEY).items()}
    proc = ManagedProcess("processor", argv, env=env, log_path=tmp_path / "processor.log").start()
    try:
        deadline = time.monotonic() + 90
        while {k.decode(): int(v) for k, v in store.hgetall(K.WATERMARK_KEY).items()} != ends:
            assert proc.running, proc.output_tail()
            assert time.monotonic() < deadline, f"not caught up: {store.hgetall(K.WATERMARK_KEY)} vs {ends}"
            time.sleep(0.1)
    finally:
        proc.stop()
    assert kills == 4 and applied_before != ends, "the kills should land before the stream was fully applied"
    assert_store_matches(store, events, catalog, cfg)
