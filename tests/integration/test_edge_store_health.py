"""The store budget is a hard cap and readiness tells the truth (robustness review findings 4 and 5),
against a real valkey-server that is frozen (SIGSTOP), thawed and started fresh."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time

import orjson
import pytest

from strata.edge.node import EdgeNode
from strata.edge.session_client import StoreHealth, describe, read_with_deadline
from strata.shared.config import load_settings

JSON = b"application/json"


def node_for(registry_dir, url: str, **store) -> EdgeNode:
    cfg = {"registry": str(registry_dir),
           "store": {"url": url, "timeout_ms": 3.0, "retry_after_s": 0.2, "bandit_refresh_s": 0.1, **store},
           "cache": {"response_ttl_s": 30.0}}
    node = EdgeNode(load_settings(edge=cfg))
    node.load_model()
    return node


async def timed(node: EdgeNode, body: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    status, _, payload = await node.handle_recommend(orjson.dumps(body), JSON, None)
    took = time.perf_counter() - t0
    assert status == 200, payload
    return took, orjson.loads(payload)


def test_deadline_is_a_hard_cap_even_when_cancellation_is_slow():
    """redis-py disconnects a connection whose read was cancelled, which can take its socket timeout:
    the caller must not wait for that clean-up."""
    async def read_with_slow_cleanup():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)            # clean-up after the cancel
            raise

    async def go() -> float:
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError):
            await read_with_deadline(read_with_slow_cleanup(), 0.003)
        took = time.perf_counter() - t0
        await asyncio.sleep(0.4)                # the abandoned read finishes its clean-up quietly
        return took

    assert asyncio.run(go()) < 0.1


def test_warnings_name_the_exception_type_when_its_message_is_empty(caplog):
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(ConnectionError("refused")) == "ConnectionError: refused"
    caplog.set_level(logging.WARNING, logger="strata.edge.session_client")
    health = StoreHealth(None)
    health.up = True
    health.failed(TimeoutError())
    assert "serving degraded" in caplog.text and caplog.text.rstrip().endswith("TimeoutError")


@pytest.mark.single_valkey("freezes the one valkey-server process (SIGSTOP, SIGCONT)")
def test_frozen_store_bounds_every_request_and_readiness_stays_down(registry_dir, fresh_valkey):
    node = node_for(registry_dir, fresh_valkey.url)
    pid = fresh_valkey._proc.pid

    async def go() -> dict:
        await node.start()
        out: dict = {"slow": [], "ready": [], "degraded": []}
        try:
            # The store serves before the freeze. The first request is cold (first reads on fresh connections,
            # first scoring: 0.9-2.0 ms against 0.4-0.6 ms warm, measured 2026-12-07), so on a busy machine it can
            # miss the 3 ms read budget (it did once in CI); it may take a few tries.
            give_up = time.monotonic() + 2.0
            for n in itertools.count():
                _, first = await timed(node, {"user_id": "u", "session_id": f"before-{n}", "k": 5})
                if not first["degraded"] or time.monotonic() > give_up:
                    break
                await asyncio.sleep(0.05)
            out["first_degraded"] = first["degraded"]
            os.kill(pid, signal.SIGSTOP)
            t_end = time.monotonic() + 2.0      # ten probe periods of 0.2 s
            i = 0
            while time.monotonic() < t_end:
                i += 1
                took, resp = await timed(node, {"user_id": "u", "session_id": f"frozen-{i}", "k": 5})
                out["slow"].append(took)
                out["degraded"].append(resp["degraded"])
                out["ready"].append(node.readiness()[1]["store"])
                await asyncio.sleep(0.01)
            os.kill(pid, signal.SIGCONT)
            t_end = time.monotonic() + 5.0
            while time.monotonic() < t_end and node.readiness()[1]["store"] != "ok":
                await asyncio.sleep(0.02)
            out["after"] = node.readiness()[1]["store"]
            _, out["thawed"] = await timed(node, {"user_id": "u", "session_id": "after-thaw", "k": 5})
        finally:
            os.kill(pid, signal.SIGCONT)
            await node.stop()
        return out

    out = asyncio.run(go())
    assert out["first_degraded"] is False
    print("frozen-store request times (ms), worst 5:", [round(x * 1e3, 2) for x in sorted(out["slow"])[-5:]])
    # whole request (ranking included) <= budget 3 ms + 5 ms + 7 ms of slack for a busy machine; the review
    # saw 54-57 ms at half-open moments
    assert max(out["slow"]) < 0.015, sorted(out["slow"])[-5:]
    # once marked down it stays down while frozen: no flap to "ok" at probe moments
    first_down = out["ready"].index("down")
    assert all(state == "down" for state in out["ready"][first_down:]), out["ready"]
    assert first_down <= 5
    assert all(out["degraded"][first_down:])
    assert node.health.probes >= 3
    assert out["after"] == "ok" and out["thawed"]["degraded"] is False


def test_cached_answer_reports_the_store_state_when_served(registry_dir, fresh_valkey):
    node = node_for(registry_dir, fresh_valkey.url, timeout_ms=100.0)   # not about the budget: no spurious misses
    body = {"user_id": "u", "session_id": "cached-session", "k": 5}

    async def go() -> list[dict]:
        await node.start()
        seen = []
        try:
            _, resp = await timed(node, body)        # store up: cached with degraded=false
            seen.append(resp)
            fresh_valkey.kill()
            node.health.failed(ConnectionError("refused"))     # what the next read would find
            _, resp = await timed(node, body)        # same body, from the cache, while the store is down
            seen.append(resp)
            _, resp = await timed(node, {**body, "session_id": "down-session"})   # computed degraded, cached
            seen.append(resp)
            fresh_valkey.start()
            t_end = time.monotonic() + 5
            while not node.health.up and time.monotonic() < t_end:
                await asyncio.sleep(0.05)
            _, resp = await timed(node, {**body, "session_id": "down-session"})   # store back: not served stale
            seen.append(resp)
        finally:
            await node.stop()
        return seen

    up, cached_while_down, computed_down, after = asyncio.run(go())
    assert up["degraded"] is False
    assert cached_while_down["timing"]["cache"] == "hit" and cached_while_down["degraded"] is True
    assert computed_down["degraded"] is True
    assert after["degraded"] is False and after["timing"]["cache"] != "hit"


def test_first_burst_on_a_healthy_store_does_not_trip_the_breaker(registry_dir, fresh_valkey, caplog):
    caplog.set_level(logging.WARNING, logger="strata.edge.session_client")
    node = node_for(registry_dir, fresh_valkey.url)

    async def go() -> list[dict]:
        await node.start()
        try:
            answers = await asyncio.gather(*(timed(node, {"user_id": "u", "session_id": f"burst-{i}", "k": 5})
                                             for i in range(16)))
            await asyncio.sleep(0.3)            # any probe a missed deadline started has finished
            return [a for _, a in answers]
        finally:
            await node.stop()

    answers = asyncio.run(go())
    assert node.health.up, node.health.last_error
    assert "store unavailable" not in caplog.text
    assert len(answers) == 16
