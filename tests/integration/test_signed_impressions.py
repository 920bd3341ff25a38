"""Signed impressions with ``auth.enabled``, on real engines (Tansu, valkey-server, the processor, tier 2):
only impressions a tier served, and clicks by the session they were served to, move bandit counts; forged,
expired and replayed ones are dead-lettered (``impression_signature``) and counted.

The review's probes: ``b3_bandit_poison.py`` (finding 4: 4 requests of self-made impressions and clicks put an
item first in 40/40 tier-2 answers) and finding 19 (predictable tier-2 impression ids let anyone click on another
session's impressions)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx

from strata.shared import keys as K
from strata.shared.auth.gate import gate_from_settings
from strata.shared.auth.impressions import ImpressionSigner, signer_from_settings
from strata.shared.config import load_settings
from strata.streaming.app import build_app
from strata.streaming.catalog import load_catalog
from strata.streaming.processor import StreamProcessor
from strata.streaming.service import IngestService
from strata.streaming.tier2.service import Tier2Service
from tests.integration.auth_kit import SECRET, bearer, make_keys
from tests.integration.streaming_kit import read_topic, streaming_settings, wait_until


def _ev(etype: str, **kw) -> dict:
    e = {"event_id": uuid.uuid4().hex, "type": etype, "user_id": kw.pop("user_id", "bot"),
         "session_id": kw.pop("session_id", "bot-s"), "ts": int(time.time() * 1000), "channel": "web"}
    e.update(kw)
    return e


@contextlib.asynccontextmanager
async def stack(cfg) -> AsyncIterator[tuple[httpx.AsyncClient, StreamProcessor]]:
    """Ingest + tier 2 behind the gate, and the processor checking signatures, as the commands build them."""
    settings = load_settings(streaming=cfg.model_dump(mode="json"))
    svc, t2 = IngestService(settings.streaming), Tier2Service(settings)
    proc = StreamProcessor(settings.streaming, load_catalog(cfg.registry, cfg.model),
                           signer=signer_from_settings(settings.auth))
    await svc.start()
    await t2.start()
    await proc.start()
    task = asyncio.create_task(proc.run())
    try:
        app = build_app(svc, t2, gate_from_settings(settings, "the streaming service"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t2", timeout=30) as c:
            yield c, proc
    finally:
        proc.stop()
        await asyncio.wait_for(task, 30)
        await proc.close()
        await t2.stop()
        await svc.stop()


def _rejected(proc: StreamProcessor, reason: str) -> float:
    return proc.metrics.instruments.counters.get(("impressions_rejected_total", (reason,)), 0.0)


def test_self_made_impressions_and_clicks_no_longer_move_the_ranking(tmp_path, monkeypatch, tansu_proc,
                                                                     fresh_valkey, registry_dir) -> None:
    keys = make_keys(tmp_path, monkeypatch)
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    catalog = load_catalog(registry_dir, "edge-scorer")
    cands = list(catalog.index)[100:140]
    slot = "b3"
    r = fresh_valkey.client()

    async def firsts(client) -> Counter:
        out = Counter()
        for i in range(40):
            resp = await client.post("/v1/recommend", json={"user_id": f"u{i}", "session_id": f"q{i}", "slot": slot,
                                                             "k": 5, "candidates": cands}, headers=bearer(keys.a))
            out[resp.json()["items"][0]["item_id"]] += 1
        return out

    async def go() -> None:
        async with stack(cfg) as (client, proc):
            before = await firsts(client)
            push, bury = cands[32], before.most_common(1)[0][0]
            await wait_until(lambda: sum(int(v) for f, v in r.hgetall(K.bandit_key("shopA", slot)).items()
                                         if f.startswith(b"n:")) == 40 * 5, what="tier 2's own 40 impressions")
            counts = {k: int(v) for k, v in r.hgetall(K.bandit_key("shopA", slot)).items()}
            for rnd in range(4):                        # the probe: 4 requests, 250 impressions + 250 clicks each
                evs = []
                for j in range(250):
                    imp = f"fake-{rnd}-{j}"
                    evs.append(_ev("impression", impression_id=imp, slot=slot, items=[push, bury],
                                   explored=[False, False], alpha=[1.0, 1.0], beta=[1.0, 1.0], tier="edge",
                                   model_version="1.0.0", session_id=f"bot{j}"))
                    evs.append(_ev("click", impression_id=imp, item_id=push, slot=slot, session_id=f"bot{j}"))
                resp = await client.post("/v1/events", json={"events": evs}, headers=bearer(keys.a))
                assert resp.status_code == 202, resp.text
            await wait_until(lambda: _rejected(proc, "forged") >= 2000, 60, "2,000 forged records dead-lettered")
            await asyncio.sleep(0.5)
            now = {k: int(v) for k, v in r.hgetall(K.bandit_key("shopA", slot)).items()}
            for item in (push, bury):                   # not one count from the fakes
                for f in (K.clicks_field(item), K.imps_field(item)):
                    assert now.get(f.encode(), 0) == counts.get(f.encode(), 0), (f, now, counts)
            after = await firsts(client)
            assert after[push] < 40 and after[push] <= before[push] + 10, (before, after)
        dead = await read_topic(tansu_proc.bootstrap, cfg.topics.dead_letter, 2000)
        assert Counter(d["code"] for d in dead)["impression_signature"] >= 2000
        assert dead[0]["reason"] == "impression signature: forged" and dead[0]["field"] == "impression_id"

    try:
        asyncio.run(go())
    finally:
        r.close()


def test_clicks_count_only_from_the_session_served_and_only_once(tmp_path, monkeypatch, tansu_proc, fresh_valkey,
                                                                 registry_dir) -> None:
    """Finding 19: a real tier-2 answer to session S; a click on it from another session is forged, one from S
    counts once (a second is a replay), the impression logged again under a new event id is a replay, the same
    impression with other priors is forged (whoever posts it first cannot set the expected clicks), and an id
    signed longer ago than the join window is expired."""
    keys = make_keys(tmp_path, monkeypatch)
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    r = fresh_valkey.client()

    async def go() -> None:
        async with stack(cfg) as (client, proc):
            ans = (await client.post("/v1/recommend", json={"user_id": "u1", "session_id": "S", "slot": "p19", "k": 3},
                                     headers=bearer(keys.a))).json()
            imp, item = ans["impression_id"], ans["items"][0]["item_id"]
            other = (await client.post("/v1/recommend", json={"user_id": "u1", "session_id": "S", "slot": "p19",
                                                              "k": 3}, headers=bearer(keys.a))).json()
            assert imp.startswith("i4.") and other["impression_id"] != imp
            assert ImpressionSigner(SECRET).check(imp, "shopA", "S") is not None
            bkey = K.bandit_key("shopA", "p19")
            await wait_until(lambda: r.hget(bkey, K.imps_field(item)) is not None, what="tier 2's impression")
            clicks = [_ev("click", impression_id=imp, item_id=item, slot="p19", session_id="T"),    # not S's
                      _ev("click", impression_id=imp, item_id=item, slot="p19", session_id="S"),
                      _ev("click", impression_id=imp, item_id=item, slot="p19", session_id="S")]   # again
            assert (await client.post("/v1/events", json={"events": clicks}, headers=bearer(keys.a))).status_code == 202
            logged = next(e for e in await read_topic(tansu_proc.bootstrap, cfg.topics.events, 2)
                          if e.get("type") == "impression" and e.get("impression_id") == imp)   # tier 2's own
            assert logged.get("prior") and len(logged["prior"]) == len(logged["items"]), logged
            replay = {**logged, "event_id": uuid.uuid4().hex}
            # the same impression first with other priors (the bandit's expected clicks): not what was signed
            tampered = {**logged, "event_id": uuid.uuid4().hex, "prior": [0.0] * len(logged["items"])}
            old = ImpressionSigner(SECRET).sign("shopA", "S", [item], int(time.time() * 1000) - 2 * 3_600_000)
            late = _ev("click", impression_id=old, item_id=item, slot="p19", session_id="S")
            assert (await client.post("/v1/events", json={"events": [tampered, replay, late]},
                                      headers=bearer(keys.a))).status_code == 202
            await wait_until(lambda: _rejected(proc, "forged") >= 2 and _rejected(proc, "replayed") >= 2
                             and _rejected(proc, "expired") >= 1, 60, "the rejections")
            assert int(r.hget(bkey, K.clicks_field(item))) == 1
            shown = sum(item in [it["item_id"] for it in a["items"]] for a in (ans, other))
            assert int(r.hget(bkey, K.imps_field(item))) == shown      # tier 2's answers, not the replay
        metrics = proc.metrics.instruments.exposition()
        assert b'strata_processor_impressions_rejected_total{reason="forged"} 2.0' in metrics

    try:
        asyncio.run(go())
    finally:
        r.close()
