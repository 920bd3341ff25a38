"""One error mapper for every front door: unexpected exceptions give a 500 with a request id (never a
dropped connection), 503s carry Retry-After, ops routes answer errors in the documented shape and record
their real status in /metrics — over the edge's own HTTP server and over the ASGI app."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import orjson
import pytest

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings

GOOD = orjson.dumps({"user_id": "u1", "session_id": "s1", "k": 3})


def node_for(registry_dir, **edge) -> EdgeNode:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}, **edge}))
    node.load_model()
    return node


def explode(ctx) -> None:
    raise RuntimeError("a bug in a stage")


def break_stage(node: EdgeNode, name: str, monkeypatch) -> None:
    stage = next(s for s in node.recommend.pipeline.stages if s.name == name)
    monkeypatch.setattr(stage, "run", explode)


def raw_exchange(port: int, payload: bytes, n_answers: int) -> list[bytes]:
    """Send raw bytes, read until ``n_answers`` HTTP answers arrived (the connection must stay open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < n_answers or not _complete(data, n_answers):
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


def _complete(data: bytes, n: int) -> bool:
    parts = data.split(b"HTTP/1.1 ")[1:]
    if len(parts) < n:
        return False
    head, _, body = parts[-1].partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    return len(body) >= length


def post(body: bytes = GOOD) -> bytes:
    return (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_500_over_the_edge_server_has_a_request_id_and_keeps_the_connection(
        registry_dir, serve_edge, monkeypatch, caplog, http) -> None:
    caplog.set_level(logging.ERROR, logger="strata.shared.serving.error_mapper")
    with serve_edge(registry_dir, http=http) as (port, node):
        break_stage(node, "posterior", monkeypatch)
        first, second = raw_exchange(port, post() + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500")
    err = orjson.loads(body)
    rid = err["request_id"]
    assert err["error"]["code"] == "internal" and rid in err["error"]["reason"] and err["retriable"] is False
    assert f"x-request-id: {rid}".encode() in head.lower()
    assert second.startswith(b"HTTP/1.1 200")                     # same connection, next request answered
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == rid]
    assert logged and logged[0].exc_info is not None and "a bug in a stage" in caplog.text
    assert 'strata_edge_requests_total{route="/v1/recommend",status="500"} 1.0' in metrics


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_500_on_a_suspended_request(registry_dir, serve_edge, fresh_valkey, monkeypatch, http) -> None:
    """A request waiting on the store runs as a Task; a failure after the store read is a 500 too."""
    with serve_edge(registry_dir, store=fresh_valkey.url, http=http) as (port, node):
        break_stage(node, "posterior", monkeypatch)
        (answer,) = raw_exchange(port, post(orjson.dumps({"user_id": "u", "session_id": "never-seen"})), 1)
    assert answer.startswith(b"HTTP/1.1 500") and b'"request_id"' in answer


def test_500_over_the_asgi_app(registry_dir, monkeypatch) -> None:
    node = node_for(registry_dir)
    break_stage(node, "select", monkeypatch)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.asgi_app()), base_url="http://e") as c:
            bad = await c.post("/v1/recommend", content=GOOD, headers={"content-type": "application/json"})
            ok = await c.get("/healthz")
        return bad, ok

    bad, ok = asyncio.run(go())
    assert bad.status_code == 500 and bad.json()["request_id"] == bad.headers["x-request-id"]
    assert ok.status_code == 200


def test_not_ready_is_503_with_retry_after(registry_dir) -> None:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))   # no model
    status, media, body = asyncio.run(node.handle_recommend(GOOD, b"application/json", None))
    assert status == 503
    err = orjson.loads(body)
    assert err["error"]["code"] == "not_ready" and err["retriable"] is True

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.asgi_app()), base_url="http://e") as c:
            return (await c.post("/v1/recommend", content=GOOD, headers={"content-type": "application/json"}),
                    await c.get("/readyz"))

    rec, ready = asyncio.run(go())
    assert rec.status_code == 503 and rec.headers["retry-after"] == "1"
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"


@pytest.mark.parametrize("front", ["asgi", "strata", "uvicorn"])
def test_ops_errors_have_the_error_shape_and_their_real_status_in_metrics(registry_dir, serve_edge, front) -> None:
    def run(client: httpx.Client) -> tuple:
        nf = client.get("/no/such/route")
        na = client.post("/healthz")
        return nf, na, client.get("/metrics").text

    if front != "asgi":
        with serve_edge(registry_dir, http=front) as (port, _), httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            nf, na, text = run(c)
    else:
        node = node_for(registry_dir)

        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.asgi_app()), base_url="http://e") as c:
                nf = await c.get("/no/such/route")
                na = await c.post("/healthz")
                return nf, na, (await c.get("/metrics")).text

        nf, na, text = asyncio.run(go())
    assert nf.status_code == 404
    assert nf.json() == {"error": {"code": "not_found", "field": "path", "reason": "no route /no/such/route"},
                         "retriable": False}
    assert na.status_code == 405 and set(na.headers["allow"].split(", ")) == {"GET", "HEAD"}   # HEAD: LB checks
    assert na.json()["error"]["code"] == "method_not_allowed"
    assert 'strata_edge_requests_total{route="other",status="404"} 1.0' in text
    assert 'strata_edge_requests_total{route="/healthz",status="405"} 1.0' in text


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_http_layer_errors_are_counted(registry_dir, serve_edge, http) -> None:
    with serve_edge(registry_dir, max_body_bytes=4096, http=http) as (port, _):
        (answer,) = raw_exchange(port, b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n", 1)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert answer.startswith(b"HTTP/1.1 413")
    assert 'strata_edge_requests_total{route="/v1/recommend",status="413"} 1.0' in text


def test_stage_latency_is_exported_per_stage(registry_dir) -> None:
    node = node_for(registry_dir)
    for i in range(64):
        asyncio.run(node.handle_recommend(orjson.dumps({"user_id": "u", "session_id": f"s{i}"}),
                                          b"application/json", None))
    text = node.exposition().decode()
    for stage in ("exact_cache", "decode", "validate", "response_cache", "session", "candidates", "guardrails",
                  "counts", "posterior", "select", "fill", "confidence", "route", "escalate", "encode"):
        assert f'strata_edge_stage_seconds_count{{stage="{stage}"}} 4.0' in text, stage
