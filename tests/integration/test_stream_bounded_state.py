"""Bounded online-store state on real engines (review findings 6 and 10): profiles keep the strongest affinities
and expire, bandit slots expire and keep a bounded number of items, dedup sets expire, and client-chosen
timestamps can neither pile up per-day fields nor freeze a session."""

from __future__ import annotations

import asyncio
import random
import string
import time

import numpy as np

from strata.shared import keys as K
from strata.streaming.catalog import load_catalog
from tests.integration.streaming_kit import ingest, processing, streaming_settings, wait_until


def _keys(store, pattern: str) -> list[bytes]:
    """Every key matching ``pattern``: SCAN, which a cluster client runs on every master (its KEYS asks one node)."""
    return list(store.scan_iter(pattern, 1000))


def _rnd(rng: random.Random, n: int = 16) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=n))


def _ev(i: int, etype: str, tag: str, **kw) -> dict:
    return {"event_id": f"{tag}-{i}", "type": etype, "user_id": kw.pop("user_id", "u"),
            "session_id": kw.pop("session_id", "s"), "ts": kw.pop("ts", int(time.time() * 1000)), "channel": "web",
            **kw}


def test_an_anonymous_client_cannot_grow_a_profile_or_a_slot_without_bound(tansu_proc, fresh_valkey,
                                                                            registry_dir) -> None:
    """The review's probe b4: 4 requests x 1000 preference events naming 50 random categories each made one
    profile of 200,001 fields (19 ms per read, blocking Valkey); profiles and bandit keys never expired."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    store = fresh_valkey.client()
    rng = random.Random(4)
    items = list(catalog.index)

    async def go() -> None:
        async with ingest(cfg) as (client, _), processing(cfg, catalog):
            for r in range(4):
                prefs = [_ev(r * 1000 + i, "preference", "pref", user_id="b4-one-user", session_id=_rnd(rng),
                             categories=[_rnd(rng, 60) for _ in range(50)]) for i in range(1000)]
                assert (await client.post("/v1/events", json={"events": prefs})).status_code == 202
            imps = [_ev(i, "impression", "imp", slot=_rnd(rng), impression_id=_rnd(rng), session_id=_rnd(rng),
                        items=[rng.choice(items) for _ in range(5)], explored=[False] * 5, alpha=[1.0] * 5,
                        beta=[9.0] * 5, tier="edge", model_version="1.0.0") for i in range(200)]
            views = [_ev(i, "view", "view", user_id=_rnd(rng), session_id=_rnd(rng), item_id=rng.choice(items))
                     for i in range(200)]
            for batch in (imps, views):
                assert (await client.post("/v1/events", json={"events": batch})).status_code == 202
            await wait_until(lambda: len(_keys(store, "strata:{default:u:*}:profile")) == 201, 120, "the profiles")
            await wait_until(lambda: len(_keys(store, "strata:{default:b:*}:bandit")) == 200, 120, "the slots")
        prof = store.hgetall(K.profile_key("default", "b4-one-user"))     # defaults: 64 per map, 90/30 days, 1 h
        cats = [k for k in prof if k.startswith(b"cat:")]
        assert len(prof) < 200 and len(cats) == 64, len(prof)
        for key in _keys(store, "strata:{default:u:*}:profile"):
            assert 0 < store.pttl(key) <= 91 * 86_400_000, key
        for key in _keys(store, "strata:{default:b:*}:bandit"):
            assert 0 < store.pttl(key) <= 30 * 86_400_000, key
        for key in _keys(store, "strata:{stream}:seen:*"):
            assert 0 < store.pttl(key) <= 2 * 3_600_000, key

    try:
        asyncio.run(go())
    finally:
        store.close()


def test_a_bandit_slot_keeps_the_most_shown_items(tansu_proc, fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir, bandit_max_items=10)
    catalog = load_catalog(registry_dir, "edge-scorer")
    store = fresh_valkey.client()
    shown = [f"item-{k}" for k in range(30)]

    async def go() -> None:
        async with ingest(cfg) as (client, _), processing(cfg, catalog):
            imps = [_ev(i, "impression", "imp", impression_id=f"i{i}", items=shown[:max(1, 30 - i)],
                        explored=[False] * max(1, 30 - i), alpha=[1.0] * max(1, 30 - i), beta=[9.0] * max(1, 30 - i),
                        prior=[0.1] * max(1, 30 - i), tier="edge", model_version="1.0.0") for i in range(30)]
            assert (await client.post("/v1/events", json={"events": imps})).status_code == 202
            await wait_until(lambda: store.exists(K.bandit_key("default", "home")), 30, "the slot")
        fields = store.hkeys(K.bandit_key("default", "home"))
        kept = {k.decode()[2:] for k in fields}
        assert kept == set(shown[:10])          # item-k was shown 30-k times: the 10 most shown stay
        assert len(fields) == 20                # their impressions and expected clicks (nobody clicked)

    try:
        asyncio.run(go())
    finally:
        store.close()


def test_client_timestamps_are_bounded_and_cannot_freeze_a_session(tansu_proc, fresh_valkey, registry_dir) -> None:
    """The review's probe a9: one view at ts = 9999-12-31 froze a session's vector (every later event decayed
    to nothing); ts = 0 was accepted too, and views at 4000 distinct days made 4000 profile fields. Events more
    than ``ts_skew_s`` ahead or ``ts_horizon_s`` behind are rejected at their index now, and an event a few
    minutes ahead (within the skew) counts as now: the session still follows later events."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    store = fresh_valkey.client()
    vecs = {i: catalog.vector(i) for i in ("SKU-001000", "SKU-000002")}
    now = int(time.time() * 1000)

    async def go() -> None:
        async with ingest(cfg) as (client, _), processing(cfg, catalog):
            resp = await client.post("/v1/events", json={"events": [
                _ev(0, "view", "far", session_id="S", item_id="SKU-001000", ts=253402300799999),
                _ev(1, "view", "far", session_id="S", item_id="SKU-001000", ts=0),
                _ev(2, "view", "far", session_id="S", item_id="SKU-001000", ts=now - 8 * 86_400_000),
                _ev(3, "view", "far", session_id="S", item_id="SKU-001000", ts=now + 240_000)]})
            assert resp.status_code == 202
            assert [(r["index"], r["field"]) for r in resp.json()["rejected"]] == [(0, "ts"), (1, "ts"), (2, "ts")]
            clicks = [_ev(10 + k, "click", "later", session_id="S", item_id="SKU-000002") for k in range(30)]
            assert (await client.post("/v1/events", json={"events": clicks})).status_code == 202
            await wait_until(lambda: store.hget(K.session_key("default", "S"), "vec") is not None
                             and int(store.hget(K.session_key("default", "S"), "st") is not None), 30, "the session")
            await wait_until(lambda: _cos(store, vecs["SKU-000002"]) > 0.9, 30, "the session to follow the clicks")
        prof = store.hgetall(K.profile_key("default", "u"))
        assert [k for k in prof if k.startswith(b"v:")] == [f"v:{now // 86_400_000}".encode()]

    try:
        asyncio.run(go())
    finally:
        store.close()


def _cos(store, w: np.ndarray) -> float:
    raw = store.hget(K.session_key("default", "S"), "vec")
    if raw is None:
        return -1.0
    v = np.frombuffer(raw, dtype="<f4")
    return float(v @ w / np.linalg.norm(v) / np.linalg.norm(w))


def test_a_profile_decays_once_a_day_and_drops_old_day_counters(tansu_proc, fresh_valkey, registry_dir) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    store = fresh_valkey.client()
    today = int(time.time() * 1000) // 86_400_000
    key = K.profile_key("default", "old")
    store.hset(key, mapping={"cat:kept": 1000, "brand:gone": 1, "mday": today - 30, f"v:{today - 40}": 5,
                             f"v:{today - 3}": 2, "orders": 3})

    async def go() -> None:
        async with ingest(cfg) as (client, _), processing(cfg, catalog):
            ev = _ev(0, "search", "decay", user_id="old", query="hats", consent={"marketing": True})
            assert (await client.post("/v1/events", json=ev)).status_code == 202
            await wait_until(lambda: store.hget(key, "mday") == str(today).encode(), 30, "the daily decay")
        prof = store.hgetall(key)
        assert prof[b"cat:kept"] == b"500" and b"brand:gone" not in prof       # 30 days = one half-life
        assert f"v:{today - 40}".encode() not in prof and prof[f"v:{today - 3}".encode()] == b"2"
        assert prof[b"orders"] == b"3" and prof[b"consent:marketing"] == b"1"
        assert 89 * 86_400_000 < store.pttl(key) <= 91 * 86_400_000

    try:
        asyncio.run(go())
    finally:
        store.close()
