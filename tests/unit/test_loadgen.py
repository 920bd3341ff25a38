"""Load generator against tiny local servers: counts, status handling, bounds, unique markers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from strata.loadtest.loadgen import (
    UNIQUE_MARKER,
    Workload,
    encode_requests,
    load_workload,
    run_load,
    save_workload,
)
from strata.loadtest.trivial_server import FixedResponse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Recording(asyncio.Protocol):
    """Answers every request; status 503 for every third one; records the bodies it saw."""

    def __init__(self, seen: list[bytes]) -> None:
        self.seen = seen
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(self.buf) < end + 4 + length:
                return
            self.seen.append(bytes(self.buf[end + 4:end + 4 + length]))
            del self.buf[:end + 4 + length]
            status = b"503 Service Unavailable" if len(self.seen) % 3 == 0 else b"200 OK"
            self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")


async def _with_server(factory, coro_fn):
    port = _free_port()
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port)
    try:
        return await coro_fn(port)
    finally:
        server.close()
        await server.wait_closed()


def test_encode_requests_frames_each_body() -> None:
    wl = Workload("/v1/recommend", "application/json", [b'{"a":1}', b"{}"], accept="application/msgpack")
    reqs = encode_requests(wl, 8080)
    assert reqs[0] == (b"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                       b"Content-Type: application/json\r\nAccept: application/msgpack\r\n"
                       b'Content-Length: 7\r\n\r\n{"a":1}')
    assert reqs[1].endswith(b"Content-Length: 2\r\n\r\n{}")


def test_workload_file_round_trip(tmp_path) -> None:
    wl = Workload("/x", "application/msgpack", [b"\x81\xa1a\x01", b"\x80"], accept=None)
    save_workload(wl, str(tmp_path / "w"))
    assert load_workload(str(tmp_path / "w")) == wl


def test_counts_match_latencies_against_fixed_server() -> None:
    reqs = encode_requests(Workload("/", "application/json", [b'{"x":1}', b'{"x":2}']), 1)

    async def go(port: int):
        return await run_load(reqs, port, connections=4, duration_s=0.3, warmup_s=0.05, keep_latencies=True)

    res = asyncio.run(_with_server(FixedResponse, go))
    assert res.requests > 0
    assert len(res.latencies_ns) == res.requests
    assert all(v > 0 for v in res.latencies_ns)
    assert res.statuses == {"200": res.requests}
    assert (res.errors, res.non_2xx, res.connections) == (0, 0, 4)
    assert res.p50_ms <= res.p99_ms <= res.p999_ms


def test_max_requests_bounds_the_window_exactly() -> None:
    reqs = encode_requests(Workload("/", "application/json", [b"{}"]), 1)

    async def go(port: int):
        return await run_load(reqs, port, connections=3, duration_s=30.0, warmup_s=0.0, max_requests=40,
                              count_pattern=b'"hit"')

    res = asyncio.run(_with_server(FixedResponse, go))
    assert res.requests == 40
    assert res.matched == 0
    assert res.statuses == {"200": 40}


def test_non_2xx_counted_and_unique_markers_replaced() -> None:
    body = b'{"session_id":"n-' + UNIQUE_MARKER + b'"}'
    reqs = encode_requests(Workload("/", "application/json", [body]), 1)
    seen: list[bytes] = []

    async def go(port: int):
        return await run_load(reqs, port, connections=1, duration_s=30.0, warmup_s=0.0, max_requests=30,
                              count_pattern=b"ok", unique_start=0)

    res = asyncio.run(_with_server(lambda: _Recording(seen), go))
    assert res.requests == 30 == res.matched
    assert res.statuses == {"200": 20, "503": 10}
    assert res.non_2xx == 10
    assert seen[:3] == [b'{"session_id":"n-000000000000"}', b'{"session_id":"n-000000000001"}',
                        b'{"session_id":"n-000000000002"}']
    assert len(set(seen)) == len(seen)
    assert all(len(b) == len(body) for b in seen)


def test_refused_connections_are_errors_not_results() -> None:
    reqs = encode_requests(Workload("/", "application/json", [b"{}"]), 1)
    port = _free_port()  # nothing listens here
    res = asyncio.run(run_load(reqs, port, connections=2, duration_s=0.1, warmup_s=0.0, grace_s=0.1))
    assert res.requests == 0
    assert res.errors > 0


def test_empty_workload_is_refused() -> None:
    with pytest.raises(ValueError, match="no requests"):
        asyncio.run(run_load([], 1, connections=1, duration_s=0.1))


def test_successive_runs_never_reuse_unique_tags() -> None:
    reqs = encode_requests(Workload("/", "application/json", [b'{"s":"' + UNIQUE_MARKER + b'"}']), 1)
    seen: list[bytes] = []

    async def go(port: int):
        for _ in range(2):
            await run_load(reqs, port, connections=2, duration_s=30.0, warmup_s=0.0, max_requests=20)

    asyncio.run(_with_server(lambda: _Recording(seen), go))
    assert len(seen) >= 40
    assert len(set(seen)) == len(seen)
