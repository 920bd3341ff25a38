"""The edge's own server's connections: ``EdgeServer`` (what they share: handler, app, limits, the
deadline sweep) and ``EdgeHTTP`` (one client: the asyncio Protocol, and the dispatch of its queued
requests in order).

``POST /v1/recommend`` is answered and written from ``data_received`` whenever the handler answers without
awaiting (``Handler.try_now`` returns a ``Reply``: response-cache hit, PoP session-cache hit, or no store
configured): no Task, no ASGI message dicts, one ``transport.write`` per response. Everything else runs
as one Task at a time: a ``Pending`` through ``Handler.finish``, other routes through the ASGI bridge.
Responses always leave in request order (HTTP/1.1 pipelining). Errors become answers only through
``shared.serving.error_mapper``.

The parts: reading requests (``message.MessageReader``), fairness (``flow_control.FlowControl``), writing
answers (``writer.ResponseWriter``), the ASGI bridge (``asgi_bridge``); what the connection is doing is
its ``phase`` (``phase.Phase``). Deadlines (``expire``) are checked by the server's sweep: request line
and headers within ``header_timeout_s`` of the request's first byte, the body within ``body_timeout_s``
of the headers (408, then close), ``idle_timeout_s`` between requests, none while reading is paused.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import httptools

from strata.shared.errors import RequestTimeout, TooManyConnections
from strata.shared.serving.codecs import JSON
from strata.shared.serving.error_mapper import error_reply, negotiated_error_reply
from strata.shared.serving.front_door import Recorder
from strata.shared.serving.http.asgi_bridge import call_app
from strata.shared.serving.http.flow_control import FlowControl
from strata.shared.serving.http.limits import (
    FRAMING_ALLOWANCE,
    LINGER_MAX_BYTES,
    MAX_HEADER_BYTES,
    PIPELINE_TURN,
    PIPELINE_TURN_NS,
)
from strata.shared.serving.http.message import MessageReader, Request
from strata.shared.serving.http.phase import BODY, CLOSING, HEADERS, IDLE
from strata.shared.serving.http.writer import ResponseWriter, ctype, head_bytes
from strata.shared.serving.pipeline import Handler, Pending, Reply
from strata.shared.serving.trace import TRACE, from_headers


class EdgeServer:
    """State shared by all connections: the handler, the ASGI app for the slow path, limits, connections."""

    def __init__(self, handler: Handler | None, app: Callable, recorder: Recorder, *, max_body: int,
                 idle_timeout_s: float = 30.0, header_timeout_s: float = 10.0, body_timeout_s: float = 10.0,
                 max_connections: int = 10_000, gate=None, routes: tuple[str, ...] = (),
                 lifespan_state: dict | None = None) -> None:
        """``handler``: the hot route answered inline (the edge's recommend), or None: every request goes to
        ``app`` (tiers 2 and 3). ``routes``: the app's route paths, for the metrics label of answers this
        server gives itself (a 408, 413, 431 ...). ``lifespan_state``: the ASGI lifespan state copied into each
        request's scope."""
        self.handler = handler
        self.gate = gate                # shared.auth.gate.Gate (None: auth and limits off)
        self.route_name = handler.route if handler is not None else None
        self.route = handler.route.encode() if handler is not None else None
        self.labels = frozenset(r.encode() for r in routes) | ({self.route} if self.route else frozenset())
        self.lifespan_state = lifespan_state
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


class EdgeHTTP(MessageReader, FlowControl, ResponseWriter, asyncio.Protocol):
    __slots__ = ("__weakref__",)      # the state's slots: ``state.ConnectionState``

    server: EdgeServer

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.handler = server.handler
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None       # type: ignore[assignment]  # connection_made sets it before any other callback
        self.queue = deque()
        self.busy = False           # a Task answers the request at the head of the queue
        self.phase = IDLE
        self.req = Request()
        self.body_parts = []
        self.body_size = 0
        self.header_bytes = 0
        self.expect_continue = False
        self.since = 0.0            # loop time the current phase (idle, headers, body) began
        self.task = None
        self.lost = None
        self.paused = False         # reading paused (flow control)
        self.peer = None
        self.sockname = None
        self.loop = asyncio.get_running_loop()
        self.began = False          # a message began during the current read
        self.raw_bytes = 0          # raw bytes of the open message after the read it began in
        self.hosts = 0
        self.chunk_open = False     # after a chunk-size line, before its chunk completed
        self.chunk_body = False
        self.last = None            # the last complete request (answered or queued)
        self.turn = None
        self.backlog = b""          # received, not parsed yet (MAX_PIPELINE requests wait)

    # -- connection --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport   # type: ignore[assignment]  # a stream server's transport is a Transport
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
        self.phase = CLOSING
        r = error_reply(TooManyConnections(f"the server holds its maximum of {server.max_connections} "
                                           "connections; try again shortly", field="connection"), JSON)
        self.transport.write(head_bytes(r.status, [(b"content-type", ctype(r.media)), *r.headers], len(r.body),
                                        False, False) + r.body)
        self.transport.close()
        server.recorder.answered("other", r.status, time.perf_counter_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.phase = CLOSING
        if self.turn is not None:
            self.turn.cancel()
            self.turn = None
        if self.lost is not None:
            self.lost.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        # The parser holds this protocol's bound callbacks: drop it so the pair is freed now, not by the
        # cyclic collector (which tune_gc makes rare).
        self.parser = None          # type: ignore[assignment]  # no parser callback runs after this

    def expire(self, now: float) -> None:
        """Called by the server's sweep: enforce the phase's deadline (none while we do not read)."""
        phase = self.phase
        if phase is CLOSING or self.paused:
            return
        server = self.server
        if phase is HEADERS:
            if now - self.since > server.header_timeout_s:
                self._deadline_passed("headers", server.header_timeout_s)
        elif phase is BODY:
            if now - self.since > server.body_timeout_s:
                self._deadline_passed("body", server.body_timeout_s)
        elif not self.busy and not self.queue and not self.backlog and now - self.since > server.idle_timeout_s:
            self.phase = CLOSING
            self.transport.close()

    def _deadline_passed(self, what: str, seconds: float) -> None:
        self.server.timed_out += 1
        self._fail_current(RequestTimeout(f"the request {what} did not arrive within {seconds:g} s", field=what))

    def shutdown(self) -> None:
        """Server stopping: close now if idle or half-sent, else after the requests in progress."""
        if not self.busy and not self.queue:
            self.phase = CLOSING
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.phase is CLOSING:
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

    # -- dispatch ------------------------------------------------------------------------------------
    def _drain(self) -> None:
        # None only with route None, which no request's URL equals: the hot route below always has a handler
        handler: Handler = self.handler     # type: ignore[assignment]
        route = self.server.route
        budget = PIPELINE_TURN
        t_end = 0
        while self.queue and not self.busy and self.phase is not CLOSING:
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
            out: Reply | Pending
            if req.method == b"POST" and req.url == route:
                if req.reject is not None:
                    out = negotiated_error_reply(req.reject, req.accept, req.ctype)
                else:
                    # a request id / traceparent: the trace context while it is answered (the router forwards
                    # it; a suspended request's task copies it when created)
                    token = None if req.request_id is None and req.traceparent is None else \
                        TRACE.set(from_headers(req.request_id, req.traceparent))
                    try:
                        try:
                            gate = self.server.gate
                            caller = None if gate is None else \
                                gate.admit(req.headers, self.peer, "recommend", req.authorization)
                            out = handler.try_now(req.body, req.ctype, req.accept, caller)
                        except Exception as exc:   # mapped (and, when unexpected, logged with a request id)
                            out = negotiated_error_reply(exc, req.accept, req.ctype)
                        if isinstance(out, Pending):
                            self._start(req, handler.finish(out))
                            return
                    finally:
                        if token is not None:
                            TRACE.reset(token)
                self._write_reply(req, out, req.keep_alive)
            else:
                self._start(req, self._asgi(req))
                return
        if not self.queue and not self.busy and self.phase is not CLOSING:
            if self.backlog:                # parse more of this client's input on its next turn
                self.turn = self.loop.call_soon(self._next_turn)
                return
            if self.server.stopping:
                self.phase = CLOSING
                self.transport.close()
                return
            self._resume()
            if self.phase is IDLE:
                self.since = self.loop.time()   # idle from now

    def _start(self, req: Request, coro) -> None:
        self.busy = True
        self.task = self.loop.create_task(self._answer(req, coro))

    async def _answer(self, req: Request, coro) -> None:
        """Await the request's answer, then write it and go on with the queue from the same task (a done
        callback would cost the loop another turn per suspended request)."""
        failed: Exception | None = None
        try:
            out = await coro
        except Exception as exc:            # mapped (and, when unexpected, logged with a request id)
            failed = exc
        finally:                            # (cancelled: the connection is gone, nothing to write)
            self.busy = False
            self.task = None
        if self.phase is CLOSING:
            return
        if failed is not None:
            self._write_reply(req, negotiated_error_reply(failed, req.accept, req.ctype), req.keep_alive)
        elif isinstance(out, Reply):        # a suspended recommend, finished
            self._write_reply(req, out, req.keep_alive)
        else:                               # (status, headers, body) from the ASGI app (it records itself)
            status, headers, body = out
            self._write_headers(status, headers, body, req)
        if self.turn is None:
            self._drain()

    def _asgi(self, req: Request):
        if self.lost is None:
            self.lost = asyncio.Event()
        server = self.server
        return call_app(server.app, req, self.peer, self.sockname, self.lost, server.recorder, server.lifespan_state)
