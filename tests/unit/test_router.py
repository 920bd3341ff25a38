"""The router inside an edge node (in-process, on the exported bundle) against a fake upper tier on a real socket:
answered, timed out, failed, refused by the budget or an open breaker, the guardrails checked again, the
per-session cache, background mode, and the request id and traceparent that go upstream."""

from __future__ import annotations

import asyncio

import msgpack
import orjson
import pytest

from strata.edge.node import EdgeNode
from strata.loadtest.fake_upstream import FakeUpstream, answer
from strata.shared.config import load_settings
from strata.shared.router.http import HttpPool, UpstreamTimeout
from strata.shared.router.router import Router
from strata.shared.serving.trace import TRACE, Trace, valid_traceparent

NEW = {"user_id": "u", "session_id": "s-new", "k": 3}     # no session vector: low confidence -> the origin
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _node(registry_dir, guardrails: dict | None = None, **router) -> EdgeNode:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}},
                                  guardrails=guardrails or {}, router={"max_escalation_share": 1.0, **router}))
    node.load_model()
    return node


async def _ask(node: EdgeNode, body: dict = NEW, trace: Trace | None = None) -> dict:
    token = TRACE.set(trace) if trace is not None else None
    try:
        status, _, payload = await node.handle_recommend(orjson.dumps(body), b"application/json", None)
    finally:
        if token is not None:
            TRACE.reset(token)
    assert status == 200, payload
    return orjson.loads(payload)


def _metric(node: EdgeNode, line_start: str) -> float:
    for line in node.exposition().decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not exposed")


def run(coro):
    return asyncio.run(coro)


def test_a_new_session_is_answered_by_the_origin_with_the_request_id_it_was_sent(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream(answer("origin", ["UP-1", "UP-2", "UP-3"])).start()
        node = _node(registry_dir, origin_urls=[fake.url])
        d = await _ask(node)
        path, headers, body = fake.requests[0]
        assert path == b"/v1/recommend" and headers[b"content-type"] == b"application/msgpack"
        assert msgpack.unpackb(body) == NEW                        # the JSON body re-encoded as msgpack
        assert (d["tier"], [i["item_id"] for i in d["items"]], d["degraded"]) == ("origin", ["UP-1", "UP-2", "UP-3"],
                                                                              False)
        assert d["impression_id"] == "fake-imp" and d["request_id"] == headers[b"x-request-id"].decode()
        assert d["route_tier"] == "origin" and "no_session_vector" in d["route_reasons"]   # why the edge sent it
        assert valid_traceparent(headers[b"traceparent"]) is not None
        assert _metric(node, 'strata_router_requests_total{outcome="answered",target="origin"}') == 1.0
        assert _metric(node, 'strata_router_upstream_seconds_count{target="origin"}') == 1.0
        assert _metric(node, f'strata_router_breaker_open{{endpoint="{fake.url}",target="origin"}}') == 0.0
        await node.stop()
        await fake.stop()
    run(go())


def test_the_callers_request_id_and_trace_go_upstream(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        node = _node(registry_dir, origin_urls=[fake.url])
        d = await _ask(node, trace=Trace("client-rid-7", TP))
        headers = fake.requests[0][1]
        assert headers[b"x-request-id"] == b"client-rid-7" and d["request_id"] == "client-rid-7"
        sent = headers[b"traceparent"].decode()
        assert sent[:36] == TP[:36] and sent[36:52] != TP[36:52]    # same trace, a new parent id for the hop
        await node.stop()
        await fake.stop()
    run(go())


def test_with_auth_on_the_callers_key_goes_upstream_and_without_it_none(registry_dir) -> None:
    """An upper tier with auth on admits the router's request only with a key: the caller's own (same tenant,
    scopes and limits there as at the edge). Before, the router sent none and every escalation came back 401."""
    from strata.shared.auth.gate import Caller
    from strata.shared.serving.pipeline import Reply

    async def go():
        fake = await FakeUpstream().start()
        node = _node(registry_dir, origin_urls=[fake.url])
        caller = Caller("acme", "k1", frozenset({"recommend"}), None, b"sk_test_123")
        out = node.recommend.try_now(orjson.dumps({**NEW, "tenant": "acme"}), b"application/json", None, caller)
        reply = out if isinstance(out, Reply) else await node.recommend.finish(out)
        assert reply.status == 200, reply.body
        assert fake.requests[0][1][b"authorization"] == b"Bearer sk_test_123"
        await _ask(node, {**NEW, "session_id": "s-other"})          # auth off: no key to send
        assert b"authorization" not in fake.requests[1][1]
        await node.stop()
        await fake.stop()
    run(go())


def test_explain_goes_to_the_origins_explain_route_within_the_explain_deadline(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        fake.delay_s = 0.05
        node = _node(registry_dir, origin_urls=[fake.url], deadline_ms={"origin": 10, "explain": 2000})
        slow = await _ask(node)                                     # 50 ms > the 10 ms recommend deadline
        assert slow["tier"] == "edge" and slow["degraded"] and slow["route_reasons"][-1] == "origin_timeout"
        d = await _ask(node, {**NEW, "session_id": "s-explain", "explain": True})
        assert d["tier"] == "origin" and fake.requests[-1][0] == b"/v1/explain"
        await node.stop()
        await fake.stop()
    run(go())


def test_a_frozen_upstream_times_out_opens_the_breaker_and_a_probe_closes_it(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        fake.hang = True
        node = _node(registry_dir, origin_urls=[fake.url], deadline_ms={"origin": 20},
                     breaker={"failures": 3, "open_s": 0.3})
        for i in range(3):
            d = await _ask(node, {**NEW, "session_id": f"s-{i}"})
            assert (d["tier"], d["degraded"], d["route_reasons"][-1]) == ("edge", True, "origin_timeout")
            assert len(d["items"]) == 3
        gauge = f'strata_router_breaker_open{{endpoint="{fake.url}",target="origin"}}'
        assert _metric(node, gauge) == 1.0
        sent = len(fake.requests)
        d = await _ask(node, {**NEW, "session_id": "s-open"})      # open: nobody waits on it, nothing is sent
        assert (d["tier"], d["degraded"], d["route_reasons"][-1]) == ("edge", True, "origin_unavailable")
        assert len(fake.requests) == sent
        assert _metric(node, 'strata_router_requests_total{outcome="breaker_open",target="origin"}') == 1.0
        assert _metric(node, 'strata_router_requests_total{outcome="timeout",target="origin"}') == 3.0
        fake.hang = False
        await asyncio.sleep(0.35)
        # the probe must not miss the 20 ms deadline on a loaded test machine (it did, under CI's three workers):
        # what is tested here is the breaker, not the deadline
        node.upstream.targets["origin"].deadline_s = 2.0
        d = await _ask(node, {**NEW, "session_id": "s-probe"})     # the half-open probe answers: closed
        assert d["tier"] == "origin" and not d["degraded"] and _metric(node, gauge) == 0.0
        await node.stop()
        await fake.stop()
    run(go())


@pytest.mark.parametrize(("setup", "reason"), [
    (lambda f: setattr(f, "status", 500), "origin_error"),
    (lambda f: setattr(f, "body", answer(items=[])), "origin_error"),
    (lambda f: setattr(f, "raw", b"\xc1not msgpack"), "origin_error"),
])
def test_a_bad_answer_leaves_the_edges_answer_degraded(registry_dir, setup, reason) -> None:
    async def go():
        fake = await FakeUpstream().start()
        setup(fake)
        node = _node(registry_dir, origin_urls=[fake.url])
        d = await _ask(node)
        assert (d["tier"], d["degraded"], d["route_reasons"][-1], len(d["items"])) == ("edge", True, reason, 3)
        await node.stop()
        await fake.stop()
    run(go())


def test_an_unreachable_upstream_and_a_spent_budget_leave_the_edges_answer(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        url = fake.url
        await fake.stop()                                           # nothing listens there any more
        node = _node(registry_dir, origin_urls=[url])
        d = await _ask(node)
        assert (d["tier"], d["degraded"], d["route_reasons"][-1]) == ("edge", True, "origin_unavailable")
        await node.stop()
        fake = await FakeUpstream().start()
        node = _node(registry_dir, origin_urls=[fake.url], max_escalation_share=0.0)
        d = await _ask(node)
        assert (d["tier"], d["degraded"], d["route_reasons"][-1]) == ("edge", True, "escalation_budget")
        assert fake.requests == [] and _metric(node, 'strata_router_requests_total{outcome="budget",target="origin"}')
        await node.stop()
        await fake.stop()
    run(go())


def test_a_tier_without_urls_is_not_escalated_to(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream(answer("streaming")).start()
        node = _node(registry_dir, streaming_urls=[fake.url])      # the request wants the origin: none configured
        d = await _ask(node)
        assert (d["tier"], d["degraded"], d["route_tier"]) == ("edge", False, "origin") and fake.requests == []
        assert "origin_unavailable" not in d["route_reasons"]
        assert len(node.responses.semantic) == 1                     # the edge's answer is the answer: cached
        await node.stop()
        await fake.stop()
    run(go())


def test_a_banned_item_from_upstream_never_reaches_the_client(registry_dir) -> None:
    async def go():
        node0 = _node(registry_dir)
        catalog = list(node0.slot.current.bundle.item_ids[:6])
        banned = catalog[0]
        fake = await FakeUpstream(answer("origin", catalog[:3])).start()
        node = _node(registry_dir, guardrails={"banned_items": [banned]}, origin_urls=[fake.url])
        for _ in range(2):                                          # asked, then served from the session's cache
            d = await _ask(node)
            ids = [i["item_id"] for i in d["items"]]
            assert banned not in ids and ids[:2] == catalog[1:3] and len(ids) == 3 and d["tier"] == "origin"
            assert d["route_reasons"][-1] == "upstream_items_removed"
        assert len(fake.requests) == 1
        assert _metric(node, 'strata_router_guardrail_removed_total{target="origin"}') == 1.0
        await node.stop()
        await fake.stop()
    run(go())


def test_the_next_request_of_an_escalated_session_is_served_from_the_edge_until_the_session_changes(
        registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        node = _node(registry_dir, origin_urls=[fake.url])
        first = await _ask(node)
        second = await _ask(node)
        assert (second["tier"], second["timing"]["cache"], second["items"]) == ("origin", "hit", first["items"])
        assert len(fake.requests) == 1 and len(node.responses.semantic) == 0
        assert _metric(node, 'strata_router_requests_total{outcome="cached",target="origin"}') == 1.0
        node.invalidate_session("default", NEW["session_id"])      # the processor: its vector changed
        third = await _ask(node)
        assert third["timing"]["cache"] == "miss" and len(fake.requests) == 2
        await node.stop()
        await fake.stop()
    run(go())


def test_an_upper_tiers_degraded_answer_is_counted_apart_from_the_edges_own(registry_dir) -> None:
    """The edge counts every answer it gives with degraded=true; the router counts the upper tiers' ones it passed
    on or served again, so the edge's own are the difference (what ``strata loadtest`` compares)."""
    async def go():
        fake = await FakeUpstream(answer("origin", degraded=True)).start()
        node = _node(registry_dir, origin_urls=[fake.url])
        for _ in range(2):                                          # asked, then served from the session's cache
            d = await _ask(node)
            assert d["tier"] == "origin" and d["degraded"] is True
        assert _metric(node, 'strata_router_degraded_total{target="origin"}') == 2.0
        assert _metric(node, "strata_edge_degraded_total") == 2.0
        await node.stop()
        await fake.stop()
    run(go())


def test_background_mode_answers_at_once_and_serves_the_upper_answer_next(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        fake.delay_s = 0.02
        node = _node(registry_dir, origin_urls=[fake.url], mode="background")
        first = await _ask(node)
        assert (first["tier"], first["degraded"], first["route_reasons"][-1]) == ("edge", False,
                                                                                  "escalated_in_background")
        for _ in range(100):                                        # the fetch completes in the background
            if node.escalated is not None and len(node.escalated):
                break
            await asyncio.sleep(0.01)
        second = await _ask(node)
        assert (second["tier"], second["timing"]["cache"]) == ("origin", "hit") and len(fake.requests) == 1
        d = await _ask(node, {**NEW, "session_id": "s-why", "explain": True})   # explain is always sync
        assert d["tier"] == "origin" and d["timing"]["cache"] == "miss"
        await node.stop()
        await fake.stop()
    run(go())


def test_a_confident_request_is_not_escalated_and_counts_in_the_window(registry_dir) -> None:
    async def go():
        fake = await FakeUpstream().start()
        node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"},
                                            "confidence": {"t_edge": 0.0}}, router={"origin_urls": [fake.url]}))
        node.load_model()
        d = await _ask(node)
        assert d["tier"] == "edge" and fake.requests == [] and isinstance(node.upstream, Router)
        assert node.upstream.window.seen_total == 1 and node.upstream.window.sent_total == 0
        await node.stop()
        await fake.stop()
    run(go())


def test_no_router_without_upstream_urls(registry_dir) -> None:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))
    assert node.upstream is None and node.escalated is None
    assert "escalated_cache" not in node.recommend.pipeline.names


# -- the HTTP client on its own ------------------------------------------------------------------------------
def test_the_pool_keeps_connections_alive_and_reconnects_when_the_server_closes_them() -> None:
    async def go():
        fake = await FakeUpstream().start()
        pool = HttpPool(fake.url)
        loop = asyncio.get_running_loop()
        for _ in range(5):
            status, body = await pool.post(b"/v1/recommend", b"\x80", b"", loop.time() + 1.0)
            assert status == 200 and msgpack.unpackb(body)["tier"] == "origin"
        assert fake.connections == 1 and pool.connects == 1 and len(pool.idle) == 1
        fake.close = True                                           # Connection: close on every answer
        for _ in range(3):
            assert (await pool.post(b"/v1/recommend", b"\x80", b"", loop.time() + 1.0))[0] == 200
        assert pool.connects == 3 and pool.idle == [] and pool.open == 0     # the kept one, then two new
        fake.close = False
        await pool.post(b"/v1/recommend", b"\x80", b"", loop.time() + 1.0)
        for conn in list(pool.idle):        # the server drops the idle connection (as uvicorn's keep-alive timeout)
            conn.transport.abort()
        await asyncio.sleep(0.01)
        assert (await pool.post(b"/v1/recommend", b"\x80", b"", loop.time() + 1.0))[0] == 200
        pool.close()
        await fake.stop()
    run(go())


def test_a_timed_out_connection_is_never_reused() -> None:
    async def go():
        fake = await FakeUpstream().start()
        fake.delay_s = 0.05
        pool = HttpPool(fake.url)
        loop = asyncio.get_running_loop()
        with pytest.raises(UpstreamTimeout):
            await pool.post(b"/v1/recommend", b"\x80", b"", loop.time() + 0.01)
        assert pool.idle == [] and pool.open == 0
        fake.delay_s = 0.0
        fake.body = answer("streaming")
        await asyncio.sleep(0.06)                                   # the late answer arrives on a closed connection
        status, body = await pool.post(b"/v1/recommend", b"\x80", b"", loop.time() + 1.0)
        assert msgpack.unpackb(body)["tier"] == "streaming" and pool.connects == 2
        pool.close()
        await fake.stop()
    run(go())
