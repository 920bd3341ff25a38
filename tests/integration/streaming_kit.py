"""Helpers for the tier-2 integration tests: unique topics per test, an in-process ingest service and
processor, reading a topic back, and the expected state computed by replaying events."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from strata.shared.config import StreamingSettings, load_settings
from strata.shared.contracts.api import parse_event
from strata.shared.ranking.session_update import replay_recent, replay_session
from strata.streaming.app import build_app
from strata.streaming.catalog import Catalog
from strata.streaming.processor import StreamProcessor
from strata.streaming.service import IngestService

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
        try:
            await asyncio.wait_for(task, 30)
        except asyncio.CancelledError:      # stopped mid-retry: the body's own error (if any) is the one to see
            if asyncio.current_task().cancelling():
                raise
        await proc.close()


async def bounded(coro, seconds: float, what: str) -> None:
    """Run ``coro``; if it has not ended after ``seconds``, fail with the stack of every task (so a hang in CI
    names the line that awaited), after cancelling it."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        buf = io.StringIO()
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.print_stack(file=buf)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise AssertionError(f"{what} hung for {seconds:g} s; the tasks were at:\n{buf.getvalue()}")
    task.result()


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
    recent = {k: replay_recent(evs, catalog.index.__contains__, cfg.session) for k, evs in per_session.items()}
    return {"sessions": states, "recent": recent, "views": dict(views), "distinct": len(seen)}


def event_stream(catalog: Catalog, seed: int, n_sessions: int = 30, per_session: int = 30,
                 dup_share: float = 0.1) -> list[dict]:
    """A seeded mixed stream (views, carts, impressions, clicks joined to them, purchases) with client
    retries: ``dup_share`` of the events are sent again later with the same event id."""
    import numpy as np

    rng = np.random.default_rng(seed)
    items = list(catalog.index)[:200]
    t0 = int(time.time() * 1000) - 60_000
    out: list[dict] = []
    for s in range(n_sessions):
        sid, uid = f"sess-{seed}-{s}", f"user-{seed}-{s % 7}"
        shown: list[tuple[str, list[str]]] = []
        for j in range(per_session):
            base = {"event_id": f"{sid}-{j}", "user_id": uid, "session_id": sid, "ts": t0 + 1000 * j + s,
                    "channel": "web"}
            roll = rng.random()
            if roll < 0.2:
                imp = f"imp-{sid}-{j}"
                its = [items[int(k)] for k in rng.choice(len(items), 5, replace=False)]
                shown.append((imp, its))
                out.append({**base, "type": "impression", "impression_id": imp, "items": its,
                            "explored": [False] * 5, "alpha": [1.0] * 5, "beta": [9.0] * 5,
                            "prior": [round(0.01 * ((j + k) % 50 + 1), 6) for k in range(5)], "tier": "edge",
                            "model_version": "1.0.0"})
            elif roll < 0.35 and shown:
                imp, its = shown[int(rng.integers(len(shown)))]
                out.append({**base, "type": "click", "impression_id": imp, "item_id": its[int(rng.integers(5))]})
            elif roll < 0.45:
                out.append({**base, "type": "add_to_cart", "item_id": items[int(rng.integers(len(items)))]})
            elif roll < 0.5:
                out.append({**base, "type": "purchase", "item_id": items[int(rng.integers(len(items)))],
                            "quantity": 1, "price": 5.0})
            else:
                out.append({**base, "type": "view", "item_id": items[int(rng.integers(len(items)))]})
    n_dup = int(len(out) * dup_share)
    for k in rng.choice(len(out), n_dup, replace=False):
        out.insert(int(rng.integers(int(k) + 1, len(out) + 1)), dict(out[int(k)]))   # retried later
    return out


def expected_counts(raw_events: list[dict]) -> dict[bytes, int]:
    """Bandit counts by an independent rule: each distinct impression counts its items once, and adds each
    item's prior times 1/log2(position + 1) (the default position weights) in millionths; a click counts once
    per (impression, item) when the item was shown in that impression."""
    import math

    seen, imps, priors, clicks = set(), {}, {}, set()
    for ev in raw_events:
        if ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        if ev["type"] == "impression":
            imps.setdefault(ev["impression_id"], ev["items"])
            priors.setdefault(ev["impression_id"], ev.get("prior"))
        elif ev["type"] == "click":
            clicks.add((ev["impression_id"], ev["item_id"]))
    counts: dict[bytes, int] = defaultdict(int)
    for imp, its in imps.items():
        for pos, it in enumerate(its):
            counts[f"n:{it}".encode()] += 1
            if priors[imp] is not None and priors[imp][pos] > 0:
                counts[f"e:{it}".encode()] += round(priors[imp][pos] / math.log2(pos + 2) * 1_000_000)
    for imp, it in clicks:
        if it in imps.get(imp, ()):
            counts[f"c:{it}".encode()] += 1
    return dict(counts)


async def post_all(client: httpx.AsyncClient, events: list[dict], batch: int = 100) -> None:
    for i in range(0, len(events), batch):
        resp = await client.post("/v1/events", json={"events": events[i:i + batch]})
        assert resp.status_code == 202 and resp.json()["accepted"] == len(events[i:i + batch]), resp.text


async def log_ends(broker: str, topic: str, n: int, timeout_s: float = 30.0) -> dict[str, int]:
    """Read the ``n`` records of ``topic``: partition -> last offset, as the watermark fields name them.

    (Tansu 0.6 answers ListOffsets with values that are not record offsets, so the log is read instead.)"""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    ends: dict[str, int] = {}
    got = 0
    try:
        deadline = time.monotonic() + timeout_s
        while got < n and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=200)).items():
                got += len(msgs)
                ends[f"{tp.topic}:{tp.partition}"] = msgs[-1].offset
    finally:
        await consumer.stop()
    assert got == n, f"{topic}: {got} records, expected {n}"
    return ends


def assert_store_matches(store, raw_events: list[dict], catalog: Catalog, cfg: StreamingSettings) -> None:
    """Exact bandit counts and views, and every session vector (bit for bit) and recent-items list equal to the
    replay."""
    from strata.shared import keys as K
    from strata.shared.ranking.session_update import decode_state, session_vec

    got = {k: int(v) for k, v in store.hgetall(K.bandit_key("default", "home")).items()}
    assert got == expected_counts(raw_events)
    expect = expected_state(raw_events, catalog, cfg)
    for (tenant, user), n in expect["views"].items():
        prof = store.hgetall(K.profile_key(tenant, user))
        assert sum(int(v) for k, v in prof.items() if k.startswith(b"v:")) == n, user
    for (tenant, sid), state in expect["sessions"].items():
        raw = store.hgetall(K.session_key(tenant, sid))
        acc = decode_state(raw.get(b"st")).state
        assert acc is not None, sid
        assert acc.acc.tobytes() == state.acc.tobytes() and acc.ref_ms == state.ref_ms, sid
        assert raw[b"vec"] == session_vec(state).astype("<f4").tobytes(), sid
        assert raw.get(b"recent", b"") == expect["recent"][(tenant, sid)], sid


def apply_purchases(store, user: str, session: str, items: list[str], ts0: int, step_ms: int,
                    id_prefix: str) -> None:
    """Write purchases of ``items`` the way the stream processor does (its own plan's purchase-history ops,
    what ``streaming.store`` runs in its script), without a broker: for origin tests that read them."""
    import numpy as np

    from strata.streaming.effects import Planner, Record, Snapshot, reads_for

    recs = [Record("events", 0, i, parse_event({"event_id": f"{id_prefix}{i}", "type": "purchase", "user_id": user,
                                                  "session_id": session, "ts": ts0 + i * step_ms, "channel": "web",
                                                  "item_id": it, "quantity": 1, "price": 1.0}))
            for i, it in enumerate(items)]
    r = reads_for(recs)
    snap = Snapshot({f: -1 for f in r.wm_fields}, set(), {k: (None, 0) for k in r.session_keys}, {}, {})
    plan = Planner(load_settings().streaming, Catalog("1", {}, np.zeros((0, 16), np.float32), [], [])).plan(
        recs, snap, 0)
    c = store.client()
    try:
        for op in plan.ops:
            if op[0] in ("ZADD", "ZREMRANGEBYRANK"):
                c.execute_command(*op)
    finally:
        c.close()
