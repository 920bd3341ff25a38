"""Closed-loop HTTP/1.1 keep-alive load generator for loopback benchmarks.

Why not Locust or wrk: Locust spends ~1 ms of Python per request and would be the bottleneck, and wrk
is not installed. This client keeps N connections busy with pre-encoded requests (one in flight per
connection), parses only the status line and Content-Length, and times every request with
``perf_counter_ns``. It talks to 127.0.0.1 only. Run it in its own process pinned to its own core
(``python -m loadtest.loadgen ...``) so it never shares a core with the server under test.

A body may contain ``UNIQUE_MARKER``; each request then gets a fresh fixed-width counter in its place
(same length, so Content-Length holds), which makes every session id unique (cache misses only).
An optional ``count_pattern`` counts the responses whose bytes contain it (e.g. a cache-hit flag).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from dataclasses import asdict, dataclass, field

import msgpack
import numpy as np
import orjson

HOST = "127.0.0.1"
MAX_ERRORS = 1000  # stop reconnecting after this many failures; the run is broken anyway
UNIQUE_MARKER = b"@@@@@@@@@@@@"
_CL = b"\r\ncontent-length:"


@dataclass(slots=True)
class Workload:
    """What to send: a path, a content type and pre-encoded bodies (cycled in order)."""

    path: str
    content_type: str
    bodies: list[bytes]
    accept: str | None = None
    authorization: str | None = None      # an ``Authorization`` header value sent with every request


@dataclass(slots=True)
class LoadResult:
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    errors: int
    non_2xx: int
    matched: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ns: list[int] | None = None

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("latencies_ns")
        return out


def encode_requests(workload: Workload, port: int) -> list[bytes]:
    """Full HTTP/1.1 request bytes, head and body, ready to write."""
    head = (f"POST {workload.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: {workload.content_type}\r\n")
    if workload.accept:
        head += f"Accept: {workload.accept}\r\n"
    if workload.authorization:
        head += f"Authorization: {workload.authorization}\r\n"
    return [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in workload.bodies]


class _Run:
    """State shared by all connections of one measurement (one event loop, so no locks)."""

    def __init__(self, requests: list[bytes], warmup_s: float, duration_s: float, max_requests: int,
                 count_pattern: bytes | None = None, unique_start: int | None = None) -> None:
        self.requests = requests
        self.count_pattern = count_pattern
        self.matched = 0
        self.unique = [r.find(UNIQUE_MARKER) for r in requests]
        self.next_index = 0
        if unique_start is None:
            # the microsecond clock outruns any request counter, so successive runs never reuse a tag
            unique_start = time.time_ns() // 1000 % 16 ** len(UNIQUE_MARKER)
        self.counter = itertools.count(unique_start)
        self.latencies: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.max_requests = max_requests
        now = time.perf_counter_ns()
        self.window_start = now + int(warmup_s * 1e9)
        self.window_end = self.window_start + int(duration_s * 1e9)
        self.stopped_at: int | None = None

    def next_request(self) -> bytes:
        i = self.next_index
        self.next_index = i + 1 if i + 1 < len(self.requests) else 0
        req, pos = self.requests[i], self.unique[i]
        if pos < 0:
            return req
        tag = b"%012x" % (next(self.counter) % 16 ** len(UNIQUE_MARKER))
        return req[:pos] + tag + req[pos + len(UNIQUE_MARKER):]

    def record(self, started_ns: int, done_ns: int, status: int, matched: bool) -> bool:
        """Book one response; False once the window is over (the connection then goes idle)."""
        if done_ns < self.window_start:
            return True
        if done_ns >= self.window_end or len(self.latencies) >= self.max_requests:
            if self.stopped_at is None:
                self.stopped_at = min(done_ns, self.window_end)
            return False
        self.latencies.append(done_ns - started_ns)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.matched += matched
        return True


class _Connection(asyncio.Protocol):
    """One keep-alive connection with exactly one request in flight."""

    def __init__(self, run: _Run, done: asyncio.Future) -> None:
        self.run = run
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_ns = 0
        self.need = -1      # total bytes of the current response once its head is parsed
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.run.next_request())

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end + 2]).lower()
                self.status = int(head[9:12])
                pos = head.find(_CL)
                if pos < 0:  # no Content-Length (e.g. chunked): not supported, treat as an error
                    self._fail()
                    return
                stop = head.index(b"\r\n", pos + 2)
                self.need = end + 4 + int(head[pos + len(_CL):stop])
            if len(buf) < self.need:
                return
            done_ns = time.perf_counter_ns()
            pattern = self.run.count_pattern
            matched = pattern is not None and buf.find(pattern, 0, self.need) >= 0
            del buf[:self.need]
            self.need = -1
            if not self.run.record(self.sent_ns, done_ns, self.status, matched):
                self._finish()
                return
            self._send()

    def _fail(self) -> None:
        self.run.errors += 1
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():  # the server closed on us mid-run
            self.run.errors += 1
            self.done.set_result(None)


async def _connection_loop(run: _Run, port: int, deadline_ns: int) -> None:
    """Keep one connection slot busy until the window ends; reconnect after a failure."""
    loop = asyncio.get_running_loop()
    while time.perf_counter_ns() < deadline_ns and run.stopped_at is None and run.errors < MAX_ERRORS:
        done = loop.create_future()
        try:
            await loop.create_connection(lambda d=done: _Connection(run, d), HOST, port)
        except OSError:
            run.errors += 1
            await asyncio.sleep(0.01)
            continue
        timeout = max((deadline_ns - time.perf_counter_ns()) / 1e9, 0.001)
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            run.errors += 1  # a request never came back
            return


async def run_load(requests: list[bytes], port: int, connections: int, duration_s: float,
                   warmup_s: float = 1.0, max_requests: int = 2_000_000, keep_latencies: bool = False,
                   grace_s: float = 5.0, count_pattern: bytes | None = None,
                   unique_start: int | None = None) -> LoadResult:
    """Drive ``connections`` closed loops for ``warmup_s`` + ``duration_s`` and summarise the window."""
    if not requests:
        raise ValueError("no requests to send")
    run = _Run(requests, warmup_s, duration_s, max_requests, count_pattern, unique_start)
    deadline = run.window_end + int(grace_s * 1e9)
    await asyncio.gather(*(_connection_loop(run, port, deadline) for _ in range(connections)))
    end = run.stopped_at or min(time.perf_counter_ns(), run.window_end)
    window_s = max((end - run.window_start) / 1e9, 1e-9)
    lat = np.asarray(run.latencies, dtype=np.int64)
    q = np.percentile(lat, [50, 99, 99.9]) / 1e6 if lat.size else np.full(3, float("nan"))
    non_2xx = sum(c for s, c in run.statuses.items() if not 200 <= s < 300)
    return LoadResult(
        connections=connections, duration_s=round(window_s, 3), requests=int(lat.size),
        rps=lat.size / window_s, p50_ms=float(q[0]), p99_ms=float(q[1]), p999_ms=float(q[2]),
        mean_ms=float(lat.mean() / 1e6) if lat.size else float("nan"), errors=run.errors, non_2xx=non_2xx,
        matched=run.matched,
        statuses={str(s): c for s, c in sorted(run.statuses.items())},
        latencies_ns=run.latencies if keep_latencies else None,
    )


def load_workload(path: str) -> Workload:
    with open(path, "rb") as f:
        raw = msgpack.unpackb(f.read(), raw=False)
    return Workload(raw["path"], raw["content_type"], raw["bodies"], raw.get("accept"), raw.get("authorization"))


def save_workload(workload: Workload, path: str) -> None:
    with open(path, "wb") as f:
        f.write(msgpack.packb({"path": workload.path, "content_type": workload.content_type,
                               "bodies": workload.bodies, "accept": workload.accept,
                               "authorization": workload.authorization}, use_bin_type=True))


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="closed-loop HTTP load against 127.0.0.1; prints a JSON summary")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workload", required=True, help="msgpack file written by save_workload")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--max-requests", type=int, default=2_000_000)
    ap.add_argument("--count-pattern-hex", default=None, help="count responses containing these bytes")
    args = ap.parse_args(argv)
    _install_uvloop()
    requests = encode_requests(load_workload(args.workload), args.port)
    pattern = bytes.fromhex(args.count_pattern_hex) if args.count_pattern_hex else None
    result = asyncio.run(run_load(requests, args.port, args.connections, args.duration, args.warmup,
                                  args.max_requests, count_pattern=pattern))
    sys.stdout.buffer.write(orjson.dumps(result.summary()) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
