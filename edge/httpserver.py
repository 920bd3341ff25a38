"""The edge's HTTP/1.1 server: an asyncio Protocol on httptools, with no ASGI cycle on the hot route.

``POST /v1/recommend`` is parsed, answered and written inside ``data_received`` whenever the answer
needs no await (response-cache hit, PoP session-cache hit, or no store configured): no Task, no ASGI
message dicts, one ``transport.write`` per response. Everything else (ops routes, /docs, other
methods, a request whose session must be read from the store) runs as a Task: the store read through
``EdgeService.recommend_after_store``, the rest through the same ASGI app uvicorn would serve
(``edge.app.build_app``). Responses always leave in request order (HTTP/1.1 pipelining).

Limits: request line + headers <= 64 KiB (431; a header block still open after 1 MiB read is cut off), body <= ``edge.max_body_bytes`` (413, then the connection is
closed), malformed HTTP gets 400 and a close, idle keep-alive connections close after
``idle_timeout_s``. ``Expect: 100-continue`` is answered. No TLS, no HTTP/2, no upgrades (the CDN
worker or a sidecar terminates those). ``strata edge --http uvicorn`` serves the ASGI app instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from collections.abc import Callable
from http import HTTPStatus

import httptools
import orjson

from edge.app import RECOMMEND, too_large
from edge.service import EdgeService, Pending

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


def _error_body(status: int, code: str, reason: str, field: str | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "reason": reason, "field": field}})


class _Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "ctype", "accept", "error", "head", "queued")

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = True
        self.ctype: bytes | None = None
        self.accept: bytes | None = None
        self.error: tuple[int, bytes] | None = None   # (status, JSON body): answer this, then close
        self.head = False
        self.queued = False


class EdgeServer:
    """State shared by all connections: the service, the ASGI app for the slow path, open connections."""

    def __init__(self, svc: EdgeService, app: Callable, *, idle_timeout_s: float = 30.0) -> None:
        self.svc = svc
        self.app = app
        self.idle_timeout_s = idle_timeout_s
        self.max_body = svc.cfg.max_body_bytes
        self.connections: set[EdgeHTTP] = set()
        self.stopping = False

    def protocol(self) -> EdgeHTTP:
        return EdgeHTTP(self)


class EdgeHTTP(asyncio.Protocol):
    __slots__ = ("server", "svc", "parser", "transport", "queue", "busy", "closing", "req", "body_parts",
                 "body_size", "header_bytes", "expect_continue", "idle", "task", "lost", "paused", "peer",
                 "sockname", "loop", "in_headers", "open_bytes")

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.svc = server.svc
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
            self._fail(400, "upgrade_unsupported", "protocol upgrades are not supported", "upgrade")
        except httptools.HttpParserError as exc:
            self._fail(400, "malformed_http", f"malformed HTTP request: {exc}", "http")

    def _fail(self, status: int, code: str, reason: str, field: str | None) -> None:
        """A request that cannot be parsed further: answer it in order, then close."""
        req = self.req
        if req.queued:          # already answering this request with an error, then closing
            return
        req.queued = True
        req.error = (status, _error_body(status, code, reason, field))
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
                req.error = self._too_large(int(value))
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
            self.req.error = self._too_large(self.body_size)
            self._fail_current()
            return
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        req = self.req
        if req.error is not None:
            return                          # already queued by _fail_current
        parts = self.body_parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.queue.append(req)
        if len(self.queue) >= MAX_PIPELINE:
            self._pause()
        if not self.busy:
            self._drain()

    def _too_large(self, size: int) -> tuple[int, bytes]:
        return 413, orjson.dumps(too_large(size, self.server.max_body).to_dict())

    def _headers_too_large(self) -> None:
        """Answer 431 as soon as the limit is crossed (not when the headers end: they may never)."""
        if self.req.error is None:
            self.req.error = (431, _error_body(431, "headers_too_large",
                                               f"request line and headers exceed {MAX_HEADER_BYTES} bytes", "headers"))
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
        svc = self.svc
        while self.queue and not self.busy and not self.closing:
            req = self.queue.popleft()
            if req.error is not None:
                status, body = req.error
                self._write(status, "application/json", body, False)
                return
            if req.method == b"POST" and req.url == RECOMMEND_B:
                try:
                    out = svc.recommend_now(req.body, req.ctype, req.accept)
                except Exception:   # never leave a client without an answer
                    logger.exception("recommend failed")
                    out = (500, "application/json", _error_body(500, "internal", "internal error"))
                if isinstance(out, Pending):
                    self._start(req, svc.recommend_after_store(out))
                    return
                self._write(out[0], out[1], out[2], req.keep_alive)
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
            logger.error("request failed", exc_info=exc)
            self._write(500, "application/json", _error_body(500, "internal", "internal error"), req.keep_alive)
        else:
            status, meta, body = task.result()
            if isinstance(meta, str):      # (status, content type, body) from the service
                self._write(status, meta, body, req.keep_alive, head=req.head)
            else:                          # (status, headers, body) from the ASGI app
                self._write_headers(status, meta, body, req.keep_alive, head=req.head)
        self._drain()

    def _write(self, status: int, ctype: str, body: bytes, keep_alive: bool, head: bool = False) -> None:
        ct = _CTYPES.get(ctype)
        if ct is None:
            ct = _CTYPES[ctype] = ctype.encode("latin-1")
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
            return 400, [(b"content-type", b"application/json")], _error_body(
                400, "malformed_http", "request target is not a valid URL", "url")
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


RECOMMEND_B = RECOMMEND.encode()


async def serve(svc: EdgeService, app: Callable, host: str, port: int, *, idle_timeout_s: float = 30.0,
                stop: asyncio.Event | None = None, started: Callable[[int], None] | None = None,
                grace_s: float = 5.0) -> None:
    """Start the service's background work, serve until ``stop`` is set (or SIGINT/SIGTERM), then drain
    in-flight requests (up to ``grace_s``) and stop the service."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    state = EdgeServer(svc, app, idle_timeout_s=idle_timeout_s)
    await svc.start()
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
        await svc.stop()
        logger.info("edge stopped")
