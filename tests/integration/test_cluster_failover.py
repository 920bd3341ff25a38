"""A master of the 3+3 Valkey Cluster killed (SIGKILL) under a flowing event stream and edge and tier-2 traffic:
its replica is promoted, the processor, the edge, tier 2 and the edge's invalidation subscriber carry on by
themselves, and with ``streaming.wait_replicas: 1`` nothing is lost or doubled (exact counts, session vectors
bit-equal to the replay)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from strata.edge.invalidation import InvalidationListener
from strata.edge.node import EdgeNode
from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.streaming.catalog import load_catalog
from tests.integration.streaming_kit import (
    assert_store_matches,
    event_stream,
    log_ends,
    processing,
    streaming_settings,
    wait_until,
)
from tests.integration.test_tier2 import tier2

JSON = b"application/json"


@pytest.fixture(scope="module")
def catalog(registry_dir):
    return load_catalog(registry_dir, "edge-scorer")


def _marks(store) -> dict[str, int]:
    try:
        return {k.decode(): int(v) for k, v in store.hgetall(K.WATERMARK_KEY).items()}
    except Exception:  # noqa: BLE001 - the slot is moving to the replica: ask again
        return {}


@pytest.mark.parametrize("victim", ["stream", "sessions"])
def test_master_killed_under_traffic_loses_and_doubles_nothing(tansu_proc, fresh_cluster, registry_dir, catalog,
                                                               victim) -> None:
    """``stream``: the master of the processor's journal and watermarks; ``sessions``: another master."""
    cluster = fresh_cluster
    cfg = streaming_settings(tansu_proc.bootstrap, cluster.url, registry_dir, max_batch=25, wait_replicas=1,
                             wait_timeout_ms=500, tier2={"log_impressions": False})
    events = event_stream(catalog, seed=23, n_sessions=60, per_session=30)
    home = cluster.node_for_key(K.WATERMARK_KEY)
    node = home if victim == "stream" else next(m for m in cluster.masters() if m is not home)
    replica = cluster.replicas_of(node)[0]
    sid = events[0]["session_id"]
    edge = EdgeNode(load_settings(edge={"registry": str(registry_dir), "cache": {"response_size": 0},
                                        "store": {"url": cluster.url, "timeout_ms": 200.0, "retry_after_s": 0.2,
                                                  "bandit_refresh_s": 0.2}}))
    edge.load_model()
    store = cluster.client()
    answers: list[tuple[float, str, bool]] = []          # (time, tier, degraded)
    invalidated: list[float] = []

    async def traffic(client, stop: asyncio.Event) -> None:
        body = orjson.dumps({"user_id": "u1", "session_id": sid, "slot": "home", "k": 5, "context": {"consent": True}})
        while not stop.is_set():
            status, _, payload = await edge.handle_recommend(body, JSON, None)
            assert status == 200, payload
            answers.append((time.monotonic(), "edge", orjson.loads(payload)["degraded"]))
            r = await client.post("/v1/recommend", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
            answers.append((time.monotonic(), "tier2", r.json()["degraded"]))
            await asyncio.sleep(0.05)

    async def go() -> float:
        await edge.start()
        lis = InvalidationListener(cluster.url, lambda t, s: invalidated.append(time.monotonic()))
        lis_task = asyncio.create_task(lis.run())
        stop = asyncio.Event()
        try:
            async with tier2(cfg) as (client, _), processing(cfg, catalog) as proc:
                await asyncio.wait_for(lis.subscribed.wait(), 10)
                tr = asyncio.create_task(traffic(client, stop))
                third = len(events) // 3
                killed_at = 0.0
                for i in range(0, len(events), 50):            # the stream flows while the master dies
                    resp = await client.post("/v1/events", json={"events": events[i:i + 50]})
                    assert resp.status_code == 202 and resp.json()["accepted"] == len(events[i:i + 50]), resp.text
                    if i >= third and not killed_at:
                        await wait_until(lambda: proc.metrics.applied > 0, 30, "the first batches applied")
                        cluster.kill(node)
                        killed_at = time.monotonic()
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(cluster.wait_until, lambda: cluster.node_for_key(K.done_key(0)) is not None
                                        and replica in cluster.masters(), 30, "the replica promoted")
                promoted_at = time.monotonic()
                cluster.restart(node)          # back as the new master's replica: WAIT 1 can succeed again there
                ends = await log_ends(cfg.broker, cfg.topics.events, len(events))
                await wait_until(lambda: _marks(store) == ends, 120, "every record applied")
                await wait_until(lambda: any(t > promoted_at + 1 for t in invalidated), 30,
                                 "invalidations after the failover")
                await asyncio.sleep(1.5)       # traffic after the processor caught up
                stop.set()
                await tr
                assert proc.metrics.instruments is not None
                return promoted_at - killed_at
        finally:
            stop.set()
            lis_task.cancel()
            await asyncio.wait((lis_task,), timeout=5)
            await edge.stop()

    took = asyncio.run(go())
    assert replica in cluster.masters() and took < 30
    late = [a for a in answers if a[0] > answers[-1][0] - 1.0]
    assert {tier for _, tier, _ in late} == {"edge", "tier2"} and not any(d for _, _, d in late), late
    assert_store_matches(store, events, catalog, cfg)
    with contextlib.suppress(Exception):
        store.close()


async def _crash_after_journal(store, plan):
    """``plan`` with a bandit increment on 20 keys (spread over the slots), written by ``store`` until it dies
    after its journal step (``_BEGIN``): the crash a processor killed mid-batch leaves."""
    plan.incr = {(K.bandit_key("t", f"s{i}"), "n:a"): 1 for i in range(20)}
    plan.bandits = dict.fromkeys(k for k, _ in plan.incr)

    async def crash(*_a) -> None:
        raise ConnectionError("killed")

    store._apply_groups = crash
    with pytest.raises(ConnectionError):
        await store.write(plan)
    del store._apply_groups
    return plan


def test_a_journal_entry_left_by_a_crash_is_finished_at_assignment(fresh_cluster) -> None:
    """A processor that died after its journal step (watermarks advanced, writes not yet on every node): the
    next owner finishes the entry when it reads the partition's watermarks, before any new record arrives."""
    from strata.streaming.cluster_store import ClusterStreamStore
    from strata.streaming.effects import Plan, StoreReads

    async def go() -> tuple:
        store = ClusterStreamStore(fresh_cluster.url)
        try:
            snap = await store.read(StoreReads({"events:0"}))
            plan = await _crash_after_journal(store, Plan({"events:0": -1}, {"events:0": 4}, [], [],
                                                          seen_bucket=snap.seen_bucket, updated_ms=1))
            r = fresh_cluster.client()
            before = [r.hget(k, "n:a") for k, _ in plan.incr]
            marks = await store.watermarks(["events:0"])
            after = [r.hget(k, "n:a") for k, _ in plan.incr]
            again = await store.watermarks(["events:0"])    # finished once: nothing left to redo
            return before, marks, after, again, [r.hget(k, "n:a") for k, _ in plan.incr], store.recovered
        finally:
            await store.close()

    before, marks, after, again, final, recovered = asyncio.run(go())
    assert before == [None] * 20 and marks == again == [4]
    assert after == final == [b"1"] * 20 and recovered == 1


def test_a_crashed_batch_of_a_replaced_log_is_finished_without_a_watermark(fresh_cluster) -> None:
    """A batch of a replaced log compares and writes no watermark (``processor._unmark``): its journal entry is
    still pending on its partitions, so a crash after the journal step is finished by the next read of them.
    (Before, such a batch failed on every node, ``HGET`` of no partition field, and was dead-lettered.)"""
    from strata.streaming.cluster_store import ClusterStreamStore
    from strata.streaming.effects import Plan, StoreReads

    async def go() -> tuple:
        store = ClusterStreamStore(fresh_cluster.url)
        try:
            snap = await store.read(StoreReads({"events:0"}))
            plan = await _crash_after_journal(store, Plan({}, {}, [], [], seen_bucket=snap.seen_bucket,
                                                          updated_ms=1, partitions=["events:0"]))
            r = fresh_cluster.client()
            before = [r.hget(k, "n:a") for k, _ in plan.incr]
            await store.read(StoreReads({"events:0"}))      # the partition's next batch finishes the entry
            after = [r.hget(k, "n:a") for k, _ in plan.incr]
            marks = await store.watermarks(["events:0"])
            return before, after, marks, store.recovered, r.hlen(K.PENDING_KEY)
        finally:
            await store.close()

    before, after, marks, recovered, pending = asyncio.run(go())
    assert before == [None] * 20 and after == [b"1"] * 20
    assert marks == [-1] and recovered == 1 and pending == 0
