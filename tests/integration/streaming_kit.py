"""Helpers for the tier-2 integration tests: unique topics per test, an in-process ingest service and
processor, reading a topic back, and the expected state computed by replaying events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from shared.config import StreamingSettings, load_settings
from shared.contracts import parse_event
from shared.session_update import replay_session
from streaming.app import build_app
from streaming.catalog import Catalog
from streaming.processor import StreamProcessor
from streaming.service import IngestService

_n = itertools.count()


def streaming_settings(broker: str, store: str, registry, **extra) -> StreamingSettings:
    tag = f"t{next(_n)}-{uuid.uuid4().hex[:6]}"
    cfg = {"broker": broker, "store": store, "registry": str(registry), "group": f"g-{tag}",
           "topics": {"events": f"events-{tag}", "dead_letter": f"dlq-{tag}", "triggers": f"triggers-{tag}",
                      "partitions": 4}, "produce_timeout_s": 2.0, **extra}
    return load_settings(streaming=cfg).streaming


@contextlib.asynccontextmanager
async def ingest(cfg: StreamingSettings) -> AsyncIterator[tuple[httpx.AsyncClient, IngestService]]:
    svc = IngestService(cfg)
    await svc.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(svc)), base_url="http://ingest",
                                     timeout=30) as client:
            yield client, svc
    finally:
        await svc.stop()


@contextlib.asynccontextmanager
async def processing(cfg: StreamingSettings, catalog: Catalog) -> AsyncIterator[StreamProcessor]:
    proc = StreamProcessor(cfg, catalog)
    await proc.start()
    task = asyncio.create_task(proc.run())
    try:
        yield proc
    finally:
        proc.stop()
        await asyncio.wait_for(task, 30)
        await proc.close()


async def wait_until(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


async def read_topic(broker: str, topic: str, n: int, timeout_s: float = 20.0) -> list[dict]:
    """The first ``n`` JSON records of ``topic`` (fails if fewer arrive in time)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                out += [orjson.loads(m.value) for m in msgs]
    finally:
        await consumer.stop()
    assert len(out) >= n, f"{topic}: {len(out)} records, expected {n}"
    return out


def expected_state(raw_events: list[dict], catalog: Catalog, cfg: StreamingSettings) -> dict:
    """Replay: distinct events (first occurrence of each id, in per-session order) through shared/."""
    seen: set[tuple[str, str]] = set()
    per_session: dict[tuple[str, str], list] = defaultdict(list)
    views: dict[tuple[str, str], int] = defaultdict(int)
    for raw in raw_events:
        ev = parse_event(raw)
        if (ev.tenant, ev.event_id) in seen:
            continue
        seen.add((ev.tenant, ev.event_id))
        per_session[(ev.tenant, ev.session_id)].append(ev)
        if ev.type == "view":
            views[(ev.tenant, ev.user_id)] += 1
    states = {k: replay_session(evs, catalog.vector, cfg.session) for k, evs in per_session.items()}
    return {"sessions": states, "views": dict(views), "distinct": len(seen)}
