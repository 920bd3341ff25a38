"""The edge's HTTP front over real sockets, under both servers ``strata edge --http`` offers (its own,
``shared.serving.http``, and uvicorn): keep-alive, pipelining order, Expect: 100-continue, 413 bodies, the ops routes,
the store path, shutdown. What only the edge's own server guarantees (a close after a 413, 400/431 as JSON
for malformed or oversized heads, a head that never ends cut off) runs against it alone (``own_server``)."""

from __future__ import annotations

import socket
import time

import httpx
import msgpack
import orjson
import pytest

GOOD = {"user_id": "u1", "session_id": "s1", "slot": "home", "k": 5}


@pytest.fixture(scope="module", params=["strata", "uvicorn"])
def server(request, registry_dir, serve_edge):
    with serve_edge(registry_dir, max_body_bytes=4096, http=request.param) as (port, svc):
        yield port, svc


@pytest.fixture
def http(request) -> str:
    """Which server ``server`` is in this test: "strata" or "uvicorn"."""
    return request.node.callspec.params["server"]


@pytest.fixture(scope="module")
def own_server(registry_dir, serve_edge):
    with serve_edge(registry_dir, max_body_bytes=4096) as (port, svc):
        yield port, svc


def post_raw(body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    return (f"POST /v1/recommend HTTP/1.1\r\nhost: edge\r\ncontent-type: {ctype}\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


def read_responses(sock: socket.socket, n: int, timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """n complete responses (status, headers, body) from a keep-alive socket, by content-length."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} responses; buffer {buf[:200]!r}")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        size = int(headers.get("content-length", "0"))
        while len(buf) < size:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            buf += chunk
        out.append((status, headers, buf[:size]))
        buf = buf[size:]
    return out


def closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_json_and_msgpack_on_one_keep_alive_connection(server):
    port, _ = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        r1 = c.post("/v1/recommend", content=orjson.dumps(GOOD), headers={"content-type": "application/json"})
        r2 = c.post("/v1/recommend", content=msgpack.packb({**GOOD, "k": 3}),
                    headers={"content-type": "application/msgpack"})
        r3 = c.post("/v1/recommend", content=orjson.dumps(GOOD),
                    headers={"content-type": "application/json", "accept": "application/msgpack"})
    assert r1.status_code == 200 and r1.headers["content-type"] == "application/json"
    assert len(r1.json()["items"]) == 5 and r1.json()["tier"] == "edge"
    assert r2.status_code == 200 and r2.headers["content-type"] == "application/msgpack"
    assert len(msgpack.unpackb(r2.content)["items"]) == 3
    assert msgpack.unpackb(r3.content)["items"] == r1.json()["items"]     # same answer, cached, other codec
    assert r1.headers.get("connection") != "close"


def test_pipelined_requests_are_answered_in_order(server):
    port, _ = server
    reqs = (post_raw(orjson.dumps({**GOOD, "k": 2}))
            + b"GET /healthz HTTP/1.1\r\nhost: edge\r\n\r\n"
            + post_raw(orjson.dumps({**GOOD, "k": 101}))
            + b"GET /v1/recommend HTTP/1.1\r\nhost: edge\r\n\r\n"
            + post_raw(msgpack.packb({**GOOD, "k": 4}), "application/msgpack"))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(reqs)
        got = read_responses(s, 5)
    assert [g[0] for g in got] == [200, 200, 422, 405, 200]
    assert len(orjson.loads(got[0][2])["items"]) == 2
    assert orjson.loads(got[1][2]) == {"status": "ok"}
    assert orjson.loads(got[2][2])["error"]["field"] == "k"
    assert got[3][1]["allow"] == "POST"
    assert len(msgpack.unpackb(got[4][2])["items"]) == 4


def test_expect_100_continue(server):
    port, _ = server
    body = orjson.dumps(GOOD)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(post_raw(b"", extra="expect: 100-continue\r\n").replace(b"content-length: 0",
                                                                             f"content-length: {len(body)}".encode()))
        s.settimeout(3)
        assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        (status, _, payload), = read_responses(s, 1)
    assert status == 200 and len(orjson.loads(payload)["items"]) == 5


def test_body_over_the_limit_by_content_length_is_413(server, http):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/recommend HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n"
                  b"content-length: 100000\r\n\r\n")
        (status, headers, payload), = read_responses(s, 1)
        assert status == 413
        err = orjson.loads(payload)["error"]
        assert err["field"] == "body" and "100000" in err["reason"] and "4096" in err["reason"]
        if http == "strata":            # its own server does not wait for a body it will not read
            assert headers["connection"] == "close" and closed(s)


def test_chunked_body_over_the_limit_is_413(server, http):
    port, _ = server
    chunk = b"x" * 3000
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/recommend HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n"
                  b"transfer-encoding: chunked\r\n\r\n" + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
        (status, _, payload), = read_responses(s, 1)
        assert status == 413 and orjson.loads(payload)["error"]["code"] == "payload_too_large"
        if http == "strata":
            assert closed(s)


def test_chunked_body_within_the_limit_is_served(server):
    port, _ = server
    body = orjson.dumps(GOOD)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/recommend HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n"
                  b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body[:10]) + body[:10] + b"\r\n"
                  + b"%x\r\n" % len(body[10:]) + body[10:] + b"\r\n0\r\n\r\n")
        (status, _, payload), = read_responses(s, 1)
    assert status == 200 and len(orjson.loads(payload)["items"]) == 5


def test_malformed_http_is_400_and_closes(own_server):
    port, _ = own_server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        (status, _, payload), = read_responses(s, 1)
        assert status == 400
        err = orjson.loads(payload)["error"]
        assert err["code"] == "malformed_http" and err["field"] == "http"
        assert closed(s)


def test_oversized_headers_are_431(own_server):
    port, _ = own_server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: edge\r\n" + b"x-big: " + b"a" * 70_000 + b"\r\n\r\n")
        (status, _, payload), = read_responses(s, 1)
        assert status == 431 and orjson.loads(payload)["error"]["field"] == "headers"
        assert closed(s)


def test_never_ending_header_is_cut_off(own_server):
    port, _ = own_server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: edge\r\nx-endless: ")
        try:
            for _ in range(40):                       # 40 x 64 KiB = 2.5 MiB of one header value
                s.sendall(b"a" * 65536)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass                                      # the server answered and closed first
        (status, _, payload), = read_responses(s, 1)
        assert status == 431 and orjson.loads(payload)["error"]["code"] == "headers_too_large"


def test_oversized_request_line_is_431(own_server):
    port, _ = own_server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /" + b"a" * 70_000)
        (status, _, _), = read_responses(s, 1)
        assert status == 431
        assert closed(s)


def test_connection_close_is_honoured(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(post_raw(orjson.dumps(GOOD), extra="connection: close\r\n"))
        (status, headers, _), = read_responses(s, 1)
        assert status == 200 and headers["connection"] == "close"
        assert closed(s)


def test_ops_routes_and_docs_through_the_asgi_bridge(server):
    port, svc = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"] == svc.ranker.version
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and "strata_edge_requests_total" in metrics.text
        assert c.get("/docs").status_code == 200
        assert c.get("/openapi.json?x=1").json()["info"]["title"] == "Strata edge"
        assert c.get("/nope").status_code == 404
        head = c.head("/healthz")          # allowed on the health routes; a HEAD answer has no body
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        head = c.head("/metrics")          # not elsewhere: 405, still without a body
        assert head.status_code == 405 and head.content == b"" and int(head.headers["content-length"]) > 0


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_idle_keep_alive_connection_is_closed(registry_dir, serve_edge, http):
    with serve_edge(registry_dir, idle_timeout_s=0.3, http=http) as (port, _), socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(post_raw(orjson.dumps(GOOD)))
        assert read_responses(s, 1)[0][0] == 200
        t0 = time.monotonic()
        assert closed(s, timeout=5)
        assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_stop_closes_idle_connections_and_returns(registry_dir, serve_edge, http):
    with serve_edge(registry_dir, http=http) as (port, _):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(post_raw(orjson.dumps(GOOD)))
        assert read_responses(s, 1)[0][0] == 200
    assert closed(s)       # `running` asserted the server thread ended
    s.close()


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_session_read_from_the_store_over_http(registry_dir, fresh_valkey, serve_edge, http):
    """A session-cache miss takes the awaited store path (a Task); the next request hits the PoP cache."""
    with serve_edge(registry_dir, store=fresh_valkey.url, http=http) as (port, svc), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        r = c.post("/v1/recommend", content=orjson.dumps({**GOOD, "session_id": "fresh"}),
                   headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["degraded"] is False
        assert svc.sessions.get(("default", "fresh")) is not None      # filled by the store read
        r2 = c.post("/v1/recommend", content=orjson.dumps({**GOOD, "session_id": "fresh", "k": 7}),
                    headers={"content-type": "application/json"})
        assert r2.status_code == 200 and len(r2.json()["items"]) == 7


@pytest.mark.parametrize("http", ["strata", "uvicorn"])
def test_store_unreachable_gives_degraded_answers_over_http(registry_dir, serve_edge, http):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with serve_edge(registry_dir, store=f"redis://127.0.0.1:{dead}/0", http=http) as (port, _), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        for i in range(3):
            r = c.post("/v1/recommend", content=orjson.dumps({**GOOD, "session_id": f"s{i}"}),
                       headers={"content-type": "application/json"})
            assert r.status_code == 200 and r.json()["degraded"] is True and len(r.json()["items"]) == 5
