"""What one connection holds, declared once (slots and their types): ``EdgeHTTP`` (``connection``) sets every
attribute in its ``__init__``; its parts (``message.MessageReader``, ``flow_control.FlowControl``,
``writer.ResponseWriter``) read and write them and call each other's methods. The parts derive from
``ConnectionState``, so each is type-checked against the same attributes. ``Request``: one request as read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    import httptools

    from strata.shared.errors import StrataError
    from strata.shared.serving.front_door import Recorder
    from strata.shared.serving.http.phase import Phase
    from strata.shared.serving.pipeline import Handler


class Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive", "ctype", "accept", "error", "reject", "head",
                 "http10", "queued", "t0", "request_id", "traceparent", "authorization")

    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]      # lower-case names
    body: bytes
    keep_alive: bool
    ctype: bytes | None
    accept: bytes | None
    error: StrataError | None               # answer this (in JSON), then close
    reject: StrataError | None              # well framed but refused: answer it, keep the connection
    head: bool                              # a HEAD request
    http10: bool
    queued: bool                            # complete (or failed) and on the connection's queue
    t0: int                                 # perf_counter_ns when it was queued
    request_id: bytes | None                # X-Request-ID, forwarded when the router escalates
    traceparent: bytes | None
    authorization: bytes | None             # the first Authorization header (the gate reads it)

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers = []
        self.body = b""
        self.keep_alive = True
        self.ctype = None
        self.accept = None
        self.error = None
        self.reject = None
        self.head = False
        self.http10 = False
        self.queued = False
        self.t0 = 0
        self.request_id = None
        self.traceparent = None
        self.authorization = None


class Server(Protocol):
    """What the parts read of the server (``connection.EdgeServer``; ``EdgeHTTP`` knows all of it)."""

    max_body: int
    max_raw: int                            # raw bytes one message may take (framing included)
    route: bytes | None                     # the inline route (None: none, every request goes to the app)
    route_name: str | None
    labels: frozenset[bytes]                # route paths, for the metrics label of the server's own answers
    recorder: Recorder


class ConnectionState:
    __slots__ = ("server", "handler", "parser", "transport", "queue", "busy", "phase", "req", "body_parts",
                 "body_size", "header_bytes", "expect_continue", "since", "task", "lost", "paused",
                 "peer", "sockname", "loop", "began", "raw_bytes", "hosts",
                 "chunk_open", "chunk_body", "last", "turn", "backlog")

    server: Server
    handler: Handler | None                 # the server's inline route (None: every request goes to the app)
    parser: httptools.HttpRequestParser     # dropped (None) when the connection is lost: no callback runs after
    transport: asyncio.Transport            # set by connection_made, before any other callback
    loop: asyncio.AbstractEventLoop
    peer: Any                               # the transport's peername / sockname (a socket address)
    sockname: Any
    phase: Phase
    since: float                            # loop time the current phase (idle, headers, body) began
    # reading a request (``MessageReader``)
    req: Request                            # the message being read
    body_parts: list[bytes]
    body_size: int
    header_bytes: int
    expect_continue: bool
    began: bool                             # a message began during the current read
    raw_bytes: int                          # raw bytes of the open message after the read it began in
    hosts: int                              # Host headers of the open message
    chunk_open: bool                        # after a chunk-size line, before its chunk completed
    chunk_body: bool
    last: Request | None                    # the last complete request (answered or queued)
    # answering in order (``EdgeHTTP``), fairness (``FlowControl``)
    queue: deque[Request]
    busy: bool                              # a Task answers the request at the head of the queue
    task: asyncio.Task | None
    lost: asyncio.Event | None              # set when the client goes away (the ASGI bridge waits on it)
    paused: bool                            # reading paused
    turn: asyncio.Handle | None             # this connection's next turn, scheduled
    backlog: bytes                          # received, not parsed yet

    if TYPE_CHECKING:
        # what the parts call on each other (for the type checker only)
        def _pause(self) -> None: ...

        def _resume(self) -> None: ...

        def _drain(self) -> None: ...

        def _fail(self, error: StrataError) -> None: ...

        def _upgrade(self) -> None: ...

        def _raw_limit(self) -> None: ...
