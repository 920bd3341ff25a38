"""Rate limits and the origin's admission control, on real processes' code paths (in-process apps, real
valkey-server for the shared limit, a stand-in OpenAI-compatible LLM on a real socket).

Probes of the review: finding 4's ``c4`` (10,000 requests from one client, none ever 429), finding 16's
``c5_llm_budget_burn.py`` (one client burns the LLM token budget for everyone) and finding 21's
``c6_concurrent_deadline.py`` (40 concurrent explains: every LLM answer waits and times out)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest
from fastapi.testclient import TestClient

from strata.deploy.local import free_port
from strata.origin.app import build_app as origin_app
from strata.origin.node import OriginNode
from strata.shared.auth.gate import gate_from_settings
from strata.shared.config import load_settings
from strata.shared.errors import TooManyRequests
from tests.integration.auth_kit import assert_refused, bearer, make_keys, streaming_app
from tests.integration.llm_standin import llm_standin
from tests.integration.streaming_kit import streaming_settings

REC = {"user_id": "u1", "session_id": "s1", "k": 3}


def test_a_key_over_its_rate_gets_429_with_retry_after(tmp_path, monkeypatch, fresh_valkey, registry_dir) -> None:
    keys = make_keys(tmp_path, monkeypatch)
    cfg = streaming_settings(f"127.0.0.1:{free_port()}", fresh_valkey.url, registry_dir)

    async def go() -> None:
        async with streaming_app(cfg, rate_limit={"per_key_rps": 2.0, "burst": 5.0}) as (client, _):
            statuses = [(await client.post("/v1/recommend", json=REC, headers=bearer(keys.a))).status_code
                        for _ in range(30)]
            assert statuses[:5] == [200] * 5 and statuses.count(429) >= 24, statuses
            resp = await client.post("/v1/recommend", json=REC, headers=bearer(keys.a))
            assert_refused(resp, 429, "Authorization", "rate limit of 2 requests/s per key")
            assert int(resp.headers["retry-after"]) >= 1
            assert (await client.post("/v1/recommend", json=REC, headers=bearer(keys.b))).status_code == 200
            for _ in range(20):                               # probes and scrapers are never limited
                assert (await client.get("/metrics")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'strata_auth_refused_total{reason="rate_limit",status="429"}' in metrics

    asyncio.run(go())


def test_per_address_limit_without_auth_at_the_origin(registry_dir, monkeypatch) -> None:
    monkeypatch.setenv("STRATA_RATE_LIMIT__PER_IP_RPS", "3")
    node = OriginNode(load_settings(origin={"registry": str(registry_dir)}))
    with TestClient(origin_app(node)) as client:
        statuses = [client.post("/v1/recommend", json=REC).status_code for _ in range(10)]
        assert statuses[:3] == [200] * 3 and set(statuses[3:]) == {429}, statuses
        assert_refused(client.post("/v1/recommend", json=REC), 429, "client", "per client address")


def test_the_limit_holds_across_processes_sharing_the_store(tmp_path, monkeypatch, fresh_valkey) -> None:
    """Two processes of a regional tier, one key at 10/s with a burst of 10: once the first took its 10 and both
    synced, the second refuses too (alone, it would let 10 more through)."""
    keys = make_keys(tmp_path, monkeypatch)
    settings = load_settings(rate_limit={"per_key_rps": 10.0, "burst": 10.0})
    one = gate_from_settings(settings, "t2", fresh_valkey.url)
    two = gate_from_settings(settings, "t2", fresh_valkey.url)
    alone = gate_from_settings(settings, "t2")
    headers = [(b"authorization", f"Bearer {keys.a}".encode())]

    async def go() -> None:
        try:
            for _ in range(10):
                one.admit(headers, None, "recommend")
            two.admit(headers, None, "recommend")
            await one.shared.sync_once()
            await two.shared.sync_once()              # learns the other's 10
            with pytest.raises(TooManyRequests):
                two.admit(headers, None, "recommend")
            assert sum(_admitted(alone, headers) for _ in range(11)) == 10     # unshared: a whole burst more
            keys_in_store = sorted(k.decode() for k in fresh_valkey.client().scan_iter("strata:*rl*"))
            assert keys_in_store and all(k.startswith("strata:{shopA}:rl:key:") for k in keys_in_store)
        finally:
            await one.stop()
            await two.stop()

    asyncio.run(go())


def _admitted(gate, headers) -> bool:
    try:
        gate.admit(headers, None, "recommend")
        return True
    except TooManyRequests:
        return False


def _explain(client, tenant: str, i: int, k: int = 20) -> tuple[str, str | None]:
    body = {"tenant": tenant, "user_id": f"u-{tenant}", "session_id": f"s{i}", "k": k,
            "query": f"bread {uuid.uuid4().hex[:8]}", "context": {"consent": False}}
    out = client.post("/v1/explain", json=body).json()
    return out["reasoner"], out["fallback"]


def test_one_tenant_cannot_burn_the_llm_budget_of_the_others(registry_dir) -> None:
    """c5: 80 explains of k=20 with distinct queries from one tenant (1,200 tokens per call), then another
    tenant's explain: it still gets the LLM (the first tenant ran into its own budget)."""
    with llm_standin() as llm:
        llm.usage = 1200
        settings = load_settings(origin={"registry": str(registry_dir), "reasoner": {
            "url": llm.url, "deadline_ms": 5000.0}}, rate_limit={"llm_tokens_per_minute": 20_000})
        with TestClient(origin_app(OriginNode(settings))) as client:
            burn = Counter(_explain(client, "shopA", i) for i in range(80))
            assert burn[("template", "tenant_over_budget")] > 0 and burn[("vllm", None)] > 0, burn
            assert _explain(client, "shopB", 0, k=3) == ("vllm", None)


def test_explains_beyond_the_bound_get_the_template_at_once(registry_dir) -> None:
    """c6: 40 concurrent explains while the LLM takes 5 s (deadline 1 s): only ``max_concurrent_explains`` of
    them wait for it (and time out); the others are answered by the template with fallback ``busy``."""
    with llm_standin() as llm:
        llm.sleep_s = 5.0
        settings = load_settings(origin={"registry": str(registry_dir), "reasoner": {
            "url": llm.url, "deadline_ms": 1000.0}}, rate_limit={"max_concurrent_explains": 4})
        node = OriginNode(settings)
        app = origin_app(node)

        async def go() -> Counter:
            await node.start()
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o",
                                             timeout=60) as c:
                    async def one(i: int) -> tuple[str, str | None]:
                        body = {"user_id": "c6", "session_id": f"c6-{i}", "k": 3, "query": f"bread {i}",
                                "context": {"consent": False}}
                        out = (await c.post("/v1/explain", json=body)).json()
                        return out["reasoner"], out["fallback"]

                    return Counter(await asyncio.gather(*(one(i) for i in range(40))))
            finally:
                await node.stop()

        got = asyncio.run(go())
        assert got[("template", "busy")] >= 36 and got[("template", "timeout")] <= 4, got
        assert node.admission.in_flight == 0
        assert b'strata_origin_reasoner_fallbacks_total{reason="busy"}' in node.exposition()
