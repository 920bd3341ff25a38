"""The edge's HTTP/1.1 server: an asyncio Protocol on httptools, with no ASGI cycle on the hot route.

``POST /v1/recommend`` is parsed, answered and written inside ``data_received`` whenever the handler
answers without awaiting (``Handler.try_now`` returns a ``Reply``: response-cache hit, PoP session-cache
hit, or no store configured): no Task, no ASGI message dicts, one ``transport.write`` per response.
Everything else runs as a Task: a ``Pending`` through ``Handler.finish``, the ops routes, /docs and
other methods through the same ASGI app uvicorn would serve (``edge.app.build_app``). Responses
always leave in request order (HTTP/1.1 pipelining). Errors become answers only through
``shared.error_mapper``; every answer is recorded with its route and real status.

Limits: request line + headers <= 64 KiB (431; a header block still open after 1 MiB read is cut off), body <= ``edge.max_body_bytes`` (413, then the connection is
closed), malformed HTTP gets 400 and a close, idle keep-alive connections close after
``idle_timeout_s``. ``Expect: 100-continue`` is answered. No TLS, no HTTP/2, no upgrades (the CDN
worker or a sidecar terminates those). ``strata edge --http uvicorn`` serves the ASGI app instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus

import httptools

from edge.app import OPS_ROUTES, Recorder, too_large
from shared.codecs import JSON
from shared.error_mapper import error_reply, negotiated_error_reply
from shared.errors import HeadersTooLarge, MalformedHttp, StrataError
from shared.pipeline import Handler, Pending, Reply

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
# Bytes read while a header block is still open. Counted per read (which may also hold earlier
# pipelined requests), so the bound is looser than MAX_HEADER_BYTES: it only stops a header block that
# never ends; a complete oversized one is caught exactly by MAX_HEADER_BYTES.
MAX_OPEN_HEADER_BYTES = 1024 * 1024
LINGER_S = 2.0                        # discard input this long after a closing answer
MAX_PIPELINE = 64                     # queued requests per connection before reading pauses
_STATUS_LINE = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CTYPES: dict[str, bytes] = {}
_HOP_BY_HOP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINE.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Status\r\n".encode()


class _Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "ctype", "accept", "error", "head", "queued",
                 "t0")

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = True
        self.ctype: bytes | None = None
        self.accept: bytes | None = None
        self.error: StrataError | None = None   # answer this (in JSON), then close
        self.head = False
        self.queued = False
        self.t0 = 0


class EdgeServer:
    """State shared by all connections: the handler, the ASGI app for the slow path, open connections."""

    def __init__(self, handler: Handler, app: Callable, recorder: Recorder, *, max_body: int,
                 idle_timeout_s: float = 30.0) -> None:
        self.handler = handler
        self.route_name = handler.route
        self.route = handler.route.encode()
        self.app = app
        self.recorder = recorder
        self.idle_timeout_s = idle_timeout_s
        self.max_body = max_body
        self.connections: set[EdgeHTTP] = set()
        self.stopping = False

    def protocol(self) -> EdgeHTTP:
        return EdgeHTTP(self)


class EdgeHTTP(asyncio.Protocol):
    __slots__ = ("server", "handler", "parser", "transport", "queue", "busy", "closing", "req", "body_parts",
                 "body_size", "header_bytes", "expect_continue", "idle", "task", "lost", "paused", "peer",
                 "sockname", "loop", "in_headers", "open_bytes")

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.handler = server.handler
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.busy = False
        self.closing = False
        self.req = _Request()
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.header_bytes = 0
        self.expect_continue = False
        self.idle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None
        self.lost: asyncio.Event | None = None
        self.paused = False
        self.peer = None
        self.sockname = None
        self.loop = asyncio.get_running_loop()
        self.in_headers = False
        self.open_bytes = 0

    # -- connection --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport   # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.idle is not None:
            self.idle.cancel()
        if self.lost is not None:
            self.lost.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def pause_writing(self) -> None:       # slow reader: stop reading its requests too
        self._pause()

    def resume_writing(self) -> None:
        self._resume()

    def _pause(self) -> None:
        if not self.paused and not self.closing:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and not self.closing:
            self.paused = False
            self.transport.resume_reading()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = self.loop.call_later(self.server.idle_timeout_s, self._idle_close)

    def _idle_close(self) -> None:
        if not self.busy and not self.queue and not self.closing:
            self.closing = True
            self.transport.close()

    def shutdown(self) -> None:
        """Server stopping: close now if idle, else after the request in progress."""
        if not self.busy and not self.queue:
            self.closing = True
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.parser.feed_data(data)
            if self.in_headers:
                self.open_bytes += len(data)
                if self.open_bytes > MAX_OPEN_HEADER_BYTES:
                    self._headers_too_large()
        except httptools.HttpParserUpgrade:
            self._fail(_upgrade_unsupported())
        except httptools.HttpParserError as exc:
            self._fail(MalformedHttp(f"malformed HTTP request: {exc}", field="http"))

    def _fail(self, error: StrataError) -> None:
        """A request that cannot be parsed further: answer it in order, then close."""
        req = self.req
        if req.queued:          # already answering this request with an error, then closing
            return
        req.queued = True
        req.error = error
        req.keep_alive = False
        self.queue.append(req)
        self.req = _Request()
        self.transport.pause_reading()
        self.paused = True
        self._drain()

    # -- parser callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.req = _Request()
        self.body_parts = []
        self.body_size = 0
        self.header_bytes = 0
        self.expect_continue = False
        self.in_headers = True
        self.open_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large()
            return
        self.req.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large()
            return
        name = name.lower()
        req = self.req
        req.headers.append((name, value))
        if name == b"content-type":
            req.ctype = value
        elif name == b"accept":
            req.accept = value
        elif name == b"content-length":
            if value.isdigit() and int(value) > self.server.max_body and req.error is None:
                req.error = too_large(int(value), self.server.max_body)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.in_headers = False
        req = self.req
        req.method = self.parser.get_method()
        req.keep_alive = self.parser.should_keep_alive()
        req.head = req.method == b"HEAD"
        if req.error is not None:
            self._fail_current()
        elif self.expect_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.req.error is not None:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.req.error = too_large(self.body_size, self.server.max_body)
            self._fail_current()
            return
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        req = self.req
        if req.error is not None:
            return                          # already queued by _fail_current
        parts = self.body_parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        req.t0 = time.perf_counter_ns()
        self.queue.append(req)
        if len(self.queue) >= MAX_PIPELINE:
            self._pause()
        if not self.busy:
            self._drain()

    def _headers_too_large(self) -> None:
        """Answer 431 as soon as the limit is crossed (not when the headers end: they may never)."""
        if self.req.error is None:
            self.req.error = HeadersTooLarge(f"request line and headers exceed {MAX_HEADER_BYTES} bytes",
                                             field="headers")
        self._fail_current()

    def _fail_current(self) -> None:
        req = self.req
        if req.queued:
            return
        req.queued = True
        req.keep_alive = False
        self.queue.append(req)
        self.transport.pause_reading()
        self.paused = True
        self._drain()

    # -- dispatch --------------------------------------------------------------------------------------
    def _drain(self) -> None:
        handler = self.handler
        route = self.server.route
        while self.queue and not self.busy and not self.closing:
            req = self.queue.popleft()
            if req.error is not None:
                self._write_reply(req, error_reply(req.error, JSON), False)
                return
            if req.method == b"POST" and req.url == route:
                try:
                    out = handler.try_now(req.body, req.ctype, req.accept)
                except Exception as exc:   # mapped (and, when unexpected, logged with a request id)
                    out = negotiated_error_reply(exc, req.accept, req.ctype)
                if isinstance(out, Pending):
                    self._start(req, handler.finish(out))
                    return
                self._write_reply(req, out, req.keep_alive)
            else:
                self._start(req, self._asgi(req))
                return
        if not self.queue and not self.busy and not self.closing:
            if self.server.stopping:
                self.closing = True
                self.transport.close()
                return
            self._resume()
            self._arm_idle()

    def _start(self, req: _Request, coro) -> None:
        self.busy = True
        self.task = task = self.loop.create_task(coro)
        task.add_done_callback(lambda t: self._finished(req, t))

    def _finished(self, req: _Request, task: asyncio.Task) -> None:
        self.busy = False
        self.task = None
        if task.cancelled() or self.closing:
            return
        exc = task.exception()
        if exc is not None:
            self._write_reply(req, negotiated_error_reply(exc, req.accept, req.ctype), req.keep_alive)
        else:
            out = task.result()
            if isinstance(out, Reply):      # a suspended recommend, finished
                self._write_reply(req, out, req.keep_alive)
            else:                          # (status, headers, body) from the ASGI app (it records itself)
                status, headers, body = out
                self._write_headers(status, headers, body, req.keep_alive, head=req.head)
        self._drain()

    def _write_reply(self, req: _Request, r: Reply, keep_alive: bool) -> None:
        """Write one answer of this server's own (the hot route or an HTTP-layer error) and record it."""
        if r.headers:
            self._write_headers(r.status, [(b"content-type", _ctype(r.media)), *r.headers], r.body, keep_alive,
                                head=req.head)
        else:
            self._write(r.status, r.media, r.body, keep_alive, head=req.head)
        server = self.server
        label = server.route_name if req.url == server.route else _route_label(req.url, server.route)
        server.recorder.answered(label, r.status, req.t0 or time.perf_counter_ns())

    def _write(self, status: int, ctype: str, body: bytes, keep_alive: bool, head: bool = False) -> None:
        ct = _ctype(ctype)
        head_bytes = b"".join((_status_line(status), b"content-type: ", ct, b"\r\ncontent-length: ",
                               str(len(body)).encode(), b"\r\n\r\n" if keep_alive else b"\r\nconnection: close\r\n\r\n"))
        self.transport.write(head_bytes if head else head_bytes + body)
        if not keep_alive:
            self._close_after_write()

    def _write_headers(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool,
                       head: bool = False) -> None:
        lines = [_status_line(status)]
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                lines.append(name + b": " + value + b"\r\n")
        lines.append(b"content-length: " + str(len(body)).encode() + b"\r\n")
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        if not head:
            lines.append(body)
        self.transport.write(b"".join(lines))
        if not keep_alive:
            self._close_after_write()

    def _close_after_write(self) -> None:
        """Lingering close: send FIN after the answer, discard what the client still sends for a moment,
        then close. Closing at once while unread bytes sit in the socket makes the kernel send RST,
        which can destroy the answer (e.g. a 413) before the client reads it."""
        self.closing = True
        t = self.transport
        if t.can_write_eof():
            t.write_eof()
            if self.paused:
                self.paused = False
                t.resume_reading()          # data_received now discards (closing)
            self.loop.call_later(LINGER_S, t.close)
        else:
            t.close()

    # -- ASGI bridge (ops routes, docs, everything not on the hot path) ------------------------------
    async def _asgi(self, req: _Request) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            url = httptools.parse_url(req.url)
        except httptools.HttpParserInvalidURLError:
            r = error_reply(MalformedHttp("request target is not a valid URL", field="url"), JSON)
            self.server.recorder.answered("other", r.status, req.t0 or time.perf_counter_ns())
            return r.status, [(b"content-type", _ctype(r.media))], r.body
        path = url.path.decode("latin-1")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": req.method.decode("latin-1"), "scheme": "http", "path": path, "raw_path": url.path,
            "query_string": url.query or b"", "root_path": "", "headers": req.headers,
            "client": self.peer, "server": self.sockname,
        }
        sent = False
        if self.lost is None:
            self.lost = asyncio.Event()
        lost = self.lost

        async def receive() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            await lost.wait()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(msg: dict) -> None:
            nonlocal status, headers
            if msg["type"] == "http.response.start":
                status = msg["status"]
                headers = list(msg.get("headers", []))
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        await self.server.app(scope, receive, send)
        return status, headers, b"".join(chunks)


def _ctype(media: str) -> bytes:
    ct = _CTYPES.get(media)
    if ct is None:
        ct = _CTYPES[media] = media.encode("latin-1")
    return ct


_OPS_B = {r.encode() for r in OPS_ROUTES}


def _route_label(url: bytes, route: bytes) -> str:
    """Metrics label of a request target: the route it names, or "other" (never the raw path)."""
    path = url.split(b"?", 1)[0]
    if path == route or path in _OPS_B:
        return path.decode()
    return "other"


def _upgrade_unsupported() -> MalformedHttp:
    err = MalformedHttp("protocol upgrades are not supported", field="upgrade")
    err.code = "upgrade_unsupported"
    return err


async def serve(node, host: str, port: int, *, idle_timeout_s: float = 30.0,
                stop: asyncio.Event | None = None, started: Callable[[int], None] | None = None,
                grace_s: float = 5.0) -> None:
    """Start the node's background work, serve until ``stop`` is set (or SIGINT/SIGTERM), then drain
    in-flight requests (up to ``grace_s``) and stop the node.

    ``node`` (an ``edge.node.EdgeNode``) provides ``recommend`` (a Handler), ``metrics`` (a Recorder),
    ``asgi_app()`` (ops routes and docs), ``start``/``stop`` and ``cfg.max_body_bytes``."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    max_body = node.cfg.max_body_bytes
    state = EdgeServer(node.recommend, node.asgi_app(), node.metrics, max_body=max_body,
                       idle_timeout_s=idle_timeout_s)
    await node.start()
    srv = await loop.create_server(state.protocol, host, port, backlog=2048, reuse_address=True)
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):   # not the main thread / not supported
            pass
    bound = srv.sockets[0].getsockname()[1]
    logger.info("edge listening", extra={"host": host, "port": bound, "http": "strata"})
    if started is not None:
        started(bound)
    try:
        await stop.wait()
    finally:
        state.stopping = True
        srv.close()
        for conn in list(state.connections):
            conn.shutdown()
        deadline = loop.time() + grace_s
        while state.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(state.connections):
            conn.transport.abort()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await node.stop()
        logger.info("edge stopped")
