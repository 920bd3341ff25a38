"""The edge's HTTP/1.1 server: an asyncio Protocol on httptools, with no ASGI cycle on the hot route.

``POST /v1/recommend`` is parsed, answered and written from ``data_received`` whenever the handler
answers without awaiting (``Handler.try_now`` returns a ``Reply``: response-cache hit, PoP session-cache
hit, or no store configured): no Task, no ASGI message dicts, one ``transport.write`` per response.
Everything else runs as a Task: a ``Pending`` through ``Handler.finish``, the ops routes, /docs and
other methods through the same ASGI app uvicorn would serve (``edge.app.build_app``). Responses
always leave in request order (HTTP/1.1 pipelining). Errors become answers only through
``shared.serving.error_mapper``; every answer is recorded with its route and real status.

Bounded work per client (a PoP faces whatever its CDN worker forwards):

- request line + headers <= 64 KiB (431); a header block, chunk-size line or trailer that never ends
  is cut off by the raw bytes the request has used: headers + body + chunk framing, extensions and
  trailers may take at most ``max_header + 2 * max_body + 16 KiB`` (431 for trailers and open
  headers, 413 otherwise; counted from the parse slice after the one the request began in, so a limit
  trips at most one 8 KiB parse slice late); the body <= ``edge.max_body_bytes`` (413);
- deadlines: request line and headers within ``header_timeout_s`` of the request's first byte, the
  body within ``body_timeout_s`` of the headers (408, then close); ``idle_timeout_s`` between requests;
- at most ``max_connections`` open connections: past it a connection gets a 503 and is closed at once;
- one connection's pipelined requests are answered inline at most ``PIPELINE_TURN`` (or 0.5 ms) at a
  time before other connections get a turn; input is parsed 8 KiB at a time, and at most
  ``MAX_PIPELINE`` parsed requests wait per connection before its parsing and reading pause;
- a closed connection holds no reference cycle (it is freed at once, not by a rare cyclic GC).

HTTP: 1.0 and 1.1 only (505 otherwise); HTTP/1.1 needs exactly one ``Host`` (400);
``Transfer-Encoding`` other than ``chunked`` is refused (400); malformed HTTP gets 400 and a close;
``Expect: 100-continue`` is answered; a ``Date`` header on every answer; no TLS, no HTTP/2, no upgrades
(an ``Upgrade`` request gets 400 ``upgrade_unsupported`` and a close). ``strata edge --http
uvicorn`` serves the ASGI app instead (README lists what it does not guarantee).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote

import httptools

from strata.edge.app import OPS_ROUTES, Recorder, content_encoding_error
from strata.shared.errors import (
    HeadersTooLarge,
    HttpVersionNotSupported,
    MalformedHttp,
    PayloadTooLarge,
    RequestTimeout,
    StrataError,
    TooManyConnections,
)
from strata.shared.serving.asgi import too_large
from strata.shared.serving.codecs import JSON
from strata.shared.serving.error_mapper import error_reply, negotiated_error_reply
from strata.shared.serving.pipeline import Handler, Pending, Reply

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
FRAMING_ALLOWANCE = 16 * 1024         # chunk-size lines, extensions and trailers beyond 2x the body limit
LINGER_S = 2.0                        # discard input this long after a closing answer ...
LINGER_MAX_BYTES = 256 * 1024         # ... or until this much was discarded, then reset the connection
MAX_PIPELINE = 32                     # queued requests per connection before reading and parsing pause
FEED_SLICE = 8 * 1024                 # bytes parsed per step (a 256 KiB read of tiny requests is ~1000)
PIPELINE_TURN = 8                     # requests one connection answers inline before others get a turn ...
PIPELINE_TURN_NS = 500_000            # ... or this much time spent answering them, whichever comes first
FD_RESERVE = 64                       # descriptors kept free for the store, the registry and logs
_STATUS_LINE = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CTYPES: dict[str, bytes] = {}
_HOP_BY_HOP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date"}
_date = [0, b""]


def _status_line(status: int) -> bytes:
    line = _STATUS_LINE.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Status\r\n".encode()


def _date_line() -> bytes:
    """``date: <IMF-fixdate>\\r\\n``, formatted once per second."""
    now = int(time.time())
    if now != _date[0]:
        _date[0] = now
        _date[1] = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date[1]


class _Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "ctype", "accept", "error", "reject", "head",
                 "http10", "queued", "t0")

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = True
        self.ctype: bytes | None = None
        self.accept: bytes | None = None
        self.error: StrataError | None = None    # answer this (in JSON), then close
        self.reject: StrataError | None = None   # well framed but refused: answer it, keep the connection
        self.head = False
        self.http10 = False
        self.queued = False
        self.t0 = 0


class EdgeServer:
    """State shared by all connections: the handler, the ASGI app for the slow path, limits, connections."""

    def __init__(self, handler: Handler, app: Callable, recorder: Recorder, *, max_body: int,
                 idle_timeout_s: float = 30.0, header_timeout_s: float = 10.0, body_timeout_s: float = 10.0,
                 max_connections: int = 10_000, gate=None) -> None:
        self.handler = handler
        self.gate = gate                # shared.auth.gate.Gate (None: auth and limits off)
        self.route_name = handler.route
        self.route = handler.route.encode()
        self.app = app
        self.recorder = recorder
        self.idle_timeout_s = idle_timeout_s
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_body = max_body
        self.max_raw = MAX_HEADER_BYTES + 2 * max_body + FRAMING_ALLOWANCE
        self.max_connections = max_connections
        # Deadlines are checked by one sweep over all connections, not by timers armed per request.
        self.tick_s = min(max(min(idle_timeout_s, header_timeout_s, body_timeout_s) / 4, 0.02), 1.0)
        self.connections: set[EdgeHTTP] = set()
        self.refused = 0
        self.timed_out = 0
        self.stopping = False

    def protocol(self) -> EdgeHTTP:
        return EdgeHTTP(self)

    async def sweep(self) -> None:
        """Every ``tick_s``: 408 for requests past their header or body deadline, close idle connections."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            for conn in list(self.connections):
                conn.expire(now)


class EdgeHTTP(asyncio.Protocol):
    __slots__ = ("server", "handler", "parser", "transport", "queue", "busy", "closing", "req", "body_parts",
                 "body_size", "header_bytes", "expect_continue", "since", "task", "lost", "paused",
                 "peer", "sockname", "loop", "in_headers", "in_message", "began", "raw_bytes", "hosts",
                 "chunk_open", "chunk_body", "last", "turn", "backlog", "__weakref__")

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
        self.since = 0.0            # loop time the current phase (idle, headers, body) began
        self.task: asyncio.Task | None = None
        self.lost: asyncio.Event | None = None
        self.paused = False
        self.peer = None
        self.sockname = None
        self.loop = asyncio.get_running_loop()
        self.in_headers = False
        self.in_message = False
        self.began = False          # a message began during the current read
        self.raw_bytes = 0          # raw bytes of the open message after the read it began in
        self.hosts = 0
        self.chunk_open = False     # after a chunk-size line, before its chunk completed
        self.chunk_body = False
        self.last: _Request | None = None     # the last complete request (answered or queued)
        self.turn: asyncio.Handle | None = None
        self.backlog = b""          # received, not parsed yet (MAX_PIPELINE requests wait)

    # -- connection --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport   # type: ignore[assignment]
        server = self.server
        if len(server.connections) >= server.max_connections:
            self._refuse()
            return
        self.peer = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        server.connections.add(self)
        self.since = self.loop.time()

    def _refuse(self) -> None:
        """Past the connection cap: a 503 at once (never a stalled accept), then close."""
        server = self.server
        server.refused += 1
        self.closing = True
        r = error_reply(TooManyConnections(f"the server holds its maximum of {server.max_connections} "
                                           "connections; try again shortly", field="connection"), JSON)
        self.transport.write(self._head(r.status, [(b"content-type", _ctype(r.media)), *r.headers], len(r.body),
                                        False, False) + r.body)
        self.transport.close()
        server.recorder.answered("other", r.status, time.perf_counter_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.turn is not None:
            self.turn.cancel()
            self.turn = None
        if self.lost is not None:
            self.lost.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        # The parser holds this protocol's bound callbacks: drop it so the pair is freed now, not by the
        # cyclic collector (which tune_gc makes rare).
        self.parser = None

    def pause_writing(self) -> None:       # slow reader: stop reading its requests too
        self._pause()

    def resume_writing(self) -> None:
        self._resume()

    def _pause(self) -> None:
        if not self.paused and not self.closing:
            self.paused = True
            self.transport.pause_reading()   # no deadline runs while paused (see expire)

    def _resume(self) -> None:
        if self.paused and not self.closing:
            self.paused = False
            self.transport.resume_reading()
            self.since = self.loop.time()   # the client could not send while we did not read

    def expire(self, now: float) -> None:
        """Called by the server's sweep: enforce the phase's deadline (none while we do not read)."""
        if self.closing or self.paused:
            return
        server = self.server
        if self.in_message:
            if self.in_headers:
                if now - self.since > server.header_timeout_s:
                    self._deadline_passed("headers", server.header_timeout_s)
            elif now - self.since > server.body_timeout_s:
                self._deadline_passed("body", server.body_timeout_s)
        elif not self.busy and not self.queue and not self.backlog and now - self.since > server.idle_timeout_s:
            self.closing = True
            self.transport.close()

    def _deadline_passed(self, what: str, seconds: float) -> None:
        self.server.timed_out += 1
        self._fail_current(RequestTimeout(f"the request {what} did not arrive within {seconds:g} s", field=what))

    def shutdown(self) -> None:
        """Server stopping: close now if idle or half-sent, else after the requests in progress."""
        if not self.busy and not self.queue:
            self.closing = True
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            # Lingering close: discard what the client still sends, but not without limit (a client
            # streaming at memory speed would keep this loop busy for LINGER_S).
            self.raw_bytes += len(data)
            if self.raw_bytes > LINGER_MAX_BYTES and self.transport is not None:
                self.transport.abort()
            return
        if self.backlog:                    # not parsed yet: this comes after it
            self.backlog += data
            return
        self._feed(data)
        if not self.busy and self.turn is None:
            self._drain()

    def _feed(self, data: bytes) -> None:
        """Parse ``data`` at most ``FEED_SLICE`` bytes at a time, and stop while ``MAX_PIPELINE`` requests
        wait: one client's big read of pipelined requests never becomes one long callback that holds
        every other connection. What is not parsed waits in ``backlog`` (reading is paused meanwhile)."""
        pos, n = 0, len(data)
        while pos < n:
            piece = data if n <= FEED_SLICE else data[pos:pos + FEED_SLICE]
            pos += len(piece)
            open_before = self.in_message
            self.began = False
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self._upgrade()
                return
            except httptools.HttpParserError as exc:
                self._fail(MalformedHttp(f"malformed HTTP request: {exc}", field="http"))
                return
            if self.closing or self.parser is None:
                return
            if self.in_message and open_before and not self.began:
                # Raw bytes of a message still open after another slice. The slice a message began in
                # is not counted (it may also hold earlier requests): a limit trips at most 8 KiB late.
                self.raw_bytes += len(piece)
                if self.raw_bytes > self.server.max_raw or (self.in_headers and self.raw_bytes > MAX_HEADER_BYTES):
                    self._raw_limit()
                    return
            if pos < n and len(self.queue) >= MAX_PIPELINE:
                self.backlog = data[pos:]
                self._pause()
                return

    def _raw_limit(self) -> None:
        limit = self.server.max_raw
        if self.in_headers:
            self._headers_too_large()
        elif self.chunk_open and not self.chunk_body:     # after the last chunk: trailers
            self._fail_current(HeadersTooLarge(f"chunked trailers exceed the request's {limit}-byte limit",
                                               field="trailers"))
        else:
            self._fail_current(PayloadTooLarge(f"body with its chunk framing exceeds the request's {limit}-byte "
                                               "limit", field="body"))

    def _upgrade(self) -> None:
        """Upgrades are not supported: the upgrade request (which llhttp completes at its headers, so a
        body it has is unread) gets 400 ``upgrade_unsupported``, alone or pipelined, then the connection
        closes."""
        last = self.last
        if last is not None and not self.in_message and last.error is None and last in self.queue:
            last.error = _upgrade_unsupported()
            last.keep_alive = False
            self._pause()
        else:
            self._fail(_upgrade_unsupported())

    def _fail(self, error: StrataError) -> None:
        """Bytes that cannot be parsed: answer in order, then close. The error belongs to the open
        message, or to bytes after the last complete request, never to a complete request."""
        if self.in_message:
            self._fail_current(error)
            return
        last = self.last
        if last is not None and not last.keep_alive:
            self._pause()           # bytes after "Connection: close": the close answers them
            return
        req = _Request()
        req.queued = True
        req.error = error
        req.keep_alive = False
        req.t0 = time.perf_counter_ns()
        self.queue.append(req)
        self._pause()

    # -- parser callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.req = _Request()
        self.body_parts = []
        self.body_size = 0
        self.header_bytes = 0
        self.expect_continue = False
        self.in_headers = True
        self.in_message = True
        self.began = True
        self.raw_bytes = 0
        self.hosts = 0
        self.chunk_open = False
        self.since = self.loop.time()       # the header deadline runs from the first byte

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
        if not self.in_headers:             # a trailer field: counted above, otherwise ignored
            return
        name = name.lower()
        req = self.req
        req.headers.append((name, value))
        if name == b"content-type":
            req.ctype = value
        elif name == b"accept":
            req.accept = value
        elif name == b"host":
            self.hosts += 1
        elif name == b"content-length":
            if value.isdigit() and int(value) > self.server.max_body and req.error is None:
                req.error = too_large(int(value), self.server.max_body)
        elif name == b"transfer-encoding":
            if value.strip().lower() != b"chunked" and req.error is None:
                req.error = MalformedHttp(f"Transfer-Encoding {value.decode('latin-1')!r} is not supported; "
                                          "only 'chunked'", field="transfer-encoding")
        elif name == b"content-encoding":
            if req.reject is None:
                req.reject = content_encoding_error(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.in_headers = False
        req = self.req
        parser = self.parser
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        req.head = req.method == b"HEAD"
        version = parser.get_http_version()
        req.http10 = version == "1.0"
        if req.error is None:
            if version not in ("1.1", "1.0"):
                req.error = HttpVersionNotSupported(f"HTTP/{version} is not supported; use HTTP/1.1 or HTTP/1.0",
                                                    field="http")
            elif self.hosts > 1 or (self.hosts == 0 and not req.http10):
                req.error = MalformedHttp(f"an HTTP/{version} request needs exactly one Host header, got "
                                          f"{self.hosts}", field="host")
        if req.error is not None:
            self._fail_current()
            return
        if self.expect_continue and req.reject is None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.since = self.loop.time()       # the body deadline runs from the end of the headers

    def on_chunk_header(self) -> None:
        self.chunk_open = True
        self.chunk_body = False

    def on_chunk_complete(self) -> None:
        self.chunk_open = False

    def on_body(self, body: bytes) -> None:
        if self.req.error is not None:
            return
        self.chunk_body = True
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self._fail_current(too_large(self.body_size, self.server.max_body))
            return
        if self.req.reject is None:
            self.body_parts.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        req = self.req
        if req.queued:
            return                          # already queued by _fail_current
        parts = self.body_parts
        req.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.body_parts = []
        req.t0 = time.perf_counter_ns()
        req.queued = True
        self.last = req
        self.queue.append(req)
        if len(self.queue) >= MAX_PIPELINE:
            self._pause()

    def _headers_too_large(self) -> None:
        """Answer 431 as soon as the limit is crossed (not when the headers end: they may never)."""
        self._fail_current(HeadersTooLarge(f"request line and headers exceed {MAX_HEADER_BYTES} bytes",
                                           field="headers"))

    def _fail_current(self, error: StrataError | None = None) -> None:
        """The open message cannot be completed: answer its error in order, then close."""
        req = self.req
        if req.queued:
            return
        if req.error is None:
            req.error = error
        req.queued = True
        req.keep_alive = False
        req.t0 = req.t0 or time.perf_counter_ns()
        self.in_message = False
        self.queue.append(req)
        self._pause()
        if not self.busy and self.turn is None:
            self._drain()

    # -- dispatch --------------------------------------------------------------------------------------
    def _next_turn(self) -> None:
        self.turn = None
        if self.closing:
            return
        if self.backlog and len(self.queue) < MAX_PIPELINE:
            data, self.backlog = self.backlog, b""
            self._feed(data)
        if not self.busy and self.turn is None:
            self._drain()

    def _drain(self) -> None:
        handler = self.handler
        route = self.server.route
        budget = PIPELINE_TURN
        t_end = 0
        while self.queue and not self.busy and not self.closing:
            if budget == 0 or (t_end and time.perf_counter_ns() > t_end):
                self._pause()               # let other connections in before answering more of these
                self.turn = self.loop.call_soon(self._next_turn)
                return
            if budget == PIPELINE_TURN:
                t_end = time.perf_counter_ns() + PIPELINE_TURN_NS
            budget -= 1
            req = self.queue.popleft()
            if req.error is not None:
                self._write_reply(req, error_reply(req.error, JSON), False)
                return
            if req.method == b"POST" and req.url == route:
                if req.reject is not None:
                    out = negotiated_error_reply(req.reject, req.accept, req.ctype)
                else:
                    try:
                        gate = self.server.gate
                        caller = gate.admit(req.headers, self.peer, "recommend") if gate is not None else None
                        out = handler.try_now(req.body, req.ctype, req.accept, caller)
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
            if self.backlog:                # parse more of this client's input on its next turn
                self.turn = self.loop.call_soon(self._next_turn)
                return
            if self.server.stopping:
                self.closing = True
                self.transport.close()
                return
            self._resume()
            if not self.in_message:
                self.since = self.loop.time()   # idle from now

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
                self._write_headers(status, headers, body, req)
        if self.turn is None:
            self._drain()

    def _write_reply(self, req: _Request, r: Reply, keep_alive: bool) -> None:
        """Write one answer of this server's own (the hot route or an HTTP-layer error) and record it."""
        req.keep_alive = keep_alive
        if r.headers:
            self._write_headers(r.status, [(b"content-type", _ctype(r.media)), *r.headers], r.body, req)
        else:
            self._write(r.status, r.media, r.body, req)
        server = self.server
        label = server.route_name if req.url == server.route else _route_label(req.url, server.route)
        server.recorder.answered(label, r.status, req.t0 or time.perf_counter_ns())

    def _write(self, status: int, ctype: str, body: bytes, req: _Request) -> None:
        keep_alive = req.keep_alive
        head_bytes = b"".join((_status_line(status), _date_line(), b"content-type: ", _ctype(ctype),
                               b"\r\ncontent-length: ", str(len(body)).encode(),
                               b"\r\n\r\n" if keep_alive and not req.http10 else
                               b"\r\nconnection: keep-alive\r\n\r\n" if keep_alive else
                               b"\r\nconnection: close\r\n\r\n"))
        self.transport.write(head_bytes if req.head else head_bytes + body)
        if not keep_alive:
            self._close_after_write()

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], length: int, keep_alive: bool,
              http10: bool) -> bytes:
        lines = [_status_line(status), _date_line()]
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                lines.append(name + b": " + value + b"\r\n")
        lines.append(b"content-length: " + str(length).encode() + b"\r\n")
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        elif http10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _write_headers(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, req: _Request) -> None:
        head = self._head(status, headers, len(body), req.keep_alive, req.http10)
        self.transport.write(head if req.head else head + body)
        if not req.keep_alive:
            self._close_after_write()

    def _close_after_write(self) -> None:
        """Lingering close: send FIN after the answer, discard what the client still sends for a moment,
        then close. Closing at once while unread bytes sit in the socket makes the kernel send RST,
        which can destroy the answer (e.g. a 413) before the client reads it."""
        self.closing = True
        self.raw_bytes = 0                  # now counts discarded bytes
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
        path = unquote(url.path.decode("latin-1"))      # ASGI: percent-decoded (as uvicorn does)
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


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered so open connections can never exhaust the process's file descriptors (an
    accept that fails on EMFILE stalls every client). The soft descriptor limit is raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    cap = min(wanted, max(soft - FD_RESERVE, 1))
    if cap < wanted:
        logger.warning("edge.max_connections lowered to %d: the process may open %d files", cap, soft)
    return cap


async def serve(node, host: str, port: int, *, idle_timeout_s: float | None = None,
                stop: asyncio.Event | None = None, started: Callable[[int], None] | None = None,
                grace_s: float = 5.0) -> None:
    """Start the node's background work, serve until ``stop`` is set (or SIGINT/SIGTERM), then drain
    in-flight requests (up to ``grace_s``) and stop the node.

    ``node`` (an ``edge.node.EdgeNode``) provides ``recommend`` (a Handler), ``metrics`` (a Recorder),
    ``asgi_app()`` (ops routes and docs), ``start``/``stop`` and ``cfg`` (limits and timeouts)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    cfg = node.cfg
    state = EdgeServer(node.recommend, node.asgi_app(), node.metrics, max_body=cfg.max_body_bytes,
                       idle_timeout_s=idle_timeout_s if idle_timeout_s is not None else cfg.idle_timeout_s,
                       header_timeout_s=cfg.header_timeout_s, body_timeout_s=cfg.body_timeout_s,
                       max_connections=connection_cap(cfg.max_connections), gate=node.gate)
    node.metrics.bind_server(connections=lambda: len(state.connections), refused=lambda: state.refused,
                             timed_out=lambda: state.timed_out)
    await node.start()
    try:
        srv = await loop.create_server(state.protocol, host, port, backlog=2048, reuse_address=True)
    except BaseException:                   # e.g. the port is taken: stop what start() began
        await node.stop()
        raise
    sweeper = loop.create_task(state.sweep(), name="http-deadlines")
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
        sweeper.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await node.stop()
        logger.info("edge stopped")
