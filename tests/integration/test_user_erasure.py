"""Consent and erasure on real engines (Tansu, valkey-server, the processor, tier 2, an edge and an origin node):
``GET /v1/users/{id}/data`` exports what is held and ``DELETE /v1/users/{id}`` erases it (scope ``admin``, the
tenant from the key); after the erasure a scan of the whole store finds no key and no value naming the user or
any of its sessions, the edge's and the origin's caches dropped it, an event of the erased history arriving
late is dropped, and both calls are in the tenant's audit stream."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson

from strata.edge.node import EdgeNode
from strata.origin.node import OriginNode
from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.streaming.app import build_app
from strata.streaming.catalog import load_catalog
from strata.streaming.service import IngestService
from tests.integration.auth_kit import assert_refused, bearer, make_keys
from tests.integration.streaming_kit import bounded, streaming_settings, wait_until
from tests.integration.test_signed_impressions import stack

USER, SESSIONS = "alice", ("alice-s1", "alice-s2")


def _events(user: str, sessions: tuple[str, ...], items: list[str], ts: int) -> list[dict]:
    out = []
    for n, s in enumerate(sessions):
        base = {"user_id": user, "session_id": s, "channel": "web"}
        out += [{**base, "event_id": uuid.uuid4().hex, "type": "view", "item_id": it, "ts": ts + i + 10 * n}
                for i, it in enumerate(items)]
        out.append({**base, "event_id": uuid.uuid4().hex, "type": "add_to_cart", "item_id": items[0], "ts": ts + 50})
        out.append({**base, "event_id": uuid.uuid4().hex, "type": "purchase", "item_id": items[1], "ts": ts + 60,
                    "quantity": 1, "price": 4.5, "consent": {"personalization": True}})
    out.append({"user_id": user, "session_id": sessions[0], "channel": "web", "event_id": uuid.uuid4().hex,
                "type": "preference", "categories": ["baby"], "ts": ts + 70})
    return out


def _dump(r) -> dict[bytes, bytes]:
    """Every key of the store -> its whole value, as bytes (whatever its type)."""
    out = {}
    for key in r.scan_iter(count=1000):
        t = r.type(key)
        if t == b"string":
            v = r.get(key) or b""
        elif t == b"hash":
            v = b"|".join(k + b"=" + x for k, x in r.hgetall(key).items())
        elif t == b"set":
            v = b"|".join(sorted(r.smembers(key)))
        elif t == b"zset":
            v = b"|".join(m for m, _ in r.zrange(key, 0, -1, withscores=True))
        elif t == b"list":
            v = b"|".join(r.lrange(key, 0, -1))
        elif t == b"stream":
            v = b"|".join(orjson.dumps({k.decode(): x.decode() for k, x in f.items()}) for _, f in r.xrange(key))
        else:
            v = b""
        out[key] = v
    return out


def test_export_and_erase_a_user_everywhere(tmp_path, monkeypatch, tansu_proc, fresh_valkey, registry_dir) -> None:
    keys = make_keys(tmp_path, monkeypatch)
    monkeypatch.setenv("STRATA_STREAMING__ERASURE_GRACE_S", "0.5")
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    items = [i for i, row in catalog.index.items() if catalog.vectors[row].any()][:4]
    r = fresh_valkey.client()
    # roomy store budgets: a read that misses the tiers' few-millisecond defaults under a loaded test machine
    # answers degraded (tested on its own), and this test is about what the caches hold
    store = {"url": fresh_valkey.url, "timeout_ms": 1000.0}
    edge = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": store}))
    origin = OriginNode(load_settings(origin={"registry": str(registry_dir), "store": store,
                                              "catalog_log": str(tmp_path / "c.jsonl")}))
    names = [USER.encode(), *(s.encode() for s in SESSIONS)]

    async def go() -> None:
        async with stack(cfg) as (client, proc):
            await edge.start()
            await origin.start()
            try:
                now = int(time.time() * 1000) - 5_000
                for user, sessions in ((USER, SESSIONS), ("bob", ("bob-s1",))):
                    resp = await client.post("/v1/events", json={"events": _events(user, sessions, items, now)},
                                             headers=bearer(keys.a))
                    assert resp.status_code == 202, resp.text
                await wait_until(lambda: all(r.exists(K.session_key("shopA", s)) for s in (*SESSIONS, "bob-s1"))
                                 and r.exists(K.user_sessions_key("shopA", USER)), what="the users' state")
                body = {"tenant": "shopA", "user_id": USER, "session_id": SESSIONS[0], "k": 5}
                # PoP session cache. The edge answers degraded without reading the store until a probe found it up;
                # its first probe (250 ms budget) can miss under CI load, and the next one comes a second later.
                for _ in range(100):
                    await edge.handle_recommend(orjson.dumps(body), b"application/json", None)
                    if edge.sessions.get(("shopA", SESSIONS[0])) is not None:
                        break
                    await asyncio.sleep(0.1)
                assert edge.sessions.get(("shopA", SESSIONS[0])) is not None, edge.health.last_error
                for _ in range(20):                                                  # the origin's profile cache
                    if not (await origin.profiles.get("shopA", USER, SESSIONS[0])).degraded:
                        break
                assert origin.profiles._cached("shopA", USER, SESSIONS[0]).purchases

                # export: admin of the tenant only
                path = f"/v1/users/{USER}/data"
                assert_refused(await client.get(path), 401, "Authorization", "API key is required")
                assert_refused(await client.get(path, headers=bearer(keys.a)), 403, "Authorization",
                               "lacks scope 'admin'")
                assert_refused(await client.get(path + "?tenant=shopA", headers=bearer(keys.b_admin)), 403, "tenant",
                               "not 'shopA'")
                other = (await client.get(path, headers=bearer(keys.b_admin))).json()   # shopB's alice: nothing
                assert other["tenant"] == "shopB" and other["sessions"] == [] and other["profile"] == {}
                data = (await client.get(path, headers=bearer(keys.a_admin))).json()
                assert sorted(s["session_id"] for s in data["sessions"]) == sorted(SESSIONS)
                assert [p["item_id"] for p in data["purchases"]] == [items[1]]
                assert data["profile"]["consent:personalization"] == "1" and data["erased_at"] is None
                assert all(len(s["vec"]) > 0 for s in data["sessions"])

                # erase: B's admin cannot touch A's user; A's admin erases it
                resp = await client.delete(f"/v1/users/{USER}", headers=bearer(keys.b_admin))
                assert resp.status_code == 200 and resp.json()["sessions"] == 0         # shopB has no alice
                assert r.exists(K.profile_key("shopA", USER))
                resp = await client.delete(f"/v1/users/{USER}", headers=bearer(keys.a_admin))
                assert resp.status_code == 200, resp.text
                assert resp.json()["sessions"] == 2
                # nothing of hers anywhere in the store; bob's state untouched
                for key, value in _dump(r).items():
                    for name in names:
                        assert name not in key and name not in value, (key, name)
                assert r.exists(K.session_key("shopA", "bob-s1")) and r.exists(K.profile_key("shopA", "bob"))
                await wait_until(lambda: edge.sessions.get(("shopA", SESSIONS[0])) is None, 10, "the edge's cache")
                await wait_until(lambda: not origin.profiles._cached("shopA", USER, SESSIONS[0]).purchases, 10,
                                 "the origin's cache")
                # her history arriving late is dropped; nothing of hers comes back
                late = _events(USER, SESSIONS[:1], items, now + 100)[:1]
                assert (await client.post("/v1/events", json={"events": late}, headers=bearer(keys.a))).status_code \
                    == 202
                await wait_until(lambda: proc.metrics.instruments.counters.get(
                    ("erased_events_dropped_total", ()), 0) >= 1, 30, "the late event dropped")
                assert not r.exists(K.session_key("shopA", SESSIONS[0]))
                assert not r.exists(K.user_sessions_key("shopA", USER))
                audit = r.xrange(K.audit_key("shopA"))
                assert [f[b"action"] for _, f in audit] == [b"export", b"erase"]
                assert all(f[b"user"] == K.user_hash("shopA", USER).encode() for _, f in audit)
            finally:
                await origin.stop()
                await edge.stop()

    try:
        # bounded here, below pytest-timeout: a hang (seen twice under CI contention, not reproduced alone or
        # beside the integration suite) fails with the stack of every task, so the awaiting line is known
        asyncio.run(bounded(go(), 150, "the erasure test"))
    finally:
        r.close()


def test_with_auth_off_the_user_data_routes_refuse_everyone(fresh_valkey, registry_dir) -> None:
    """No keys, no erasure: an open route must not erase or export anyone's data."""
    cfg = streaming_settings("127.0.0.1:9", fresh_valkey.url, registry_dir)
    app = build_app(IngestService(cfg))                 # auth off: no gate (the lifespan is not needed here)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client:
            for resp in (await client.delete(f"/v1/users/{USER}"), await client.get(f"/v1/users/{USER}/data")):
                assert_refused(resp, 403, "Authorization", "need API keys")

    asyncio.run(go())
