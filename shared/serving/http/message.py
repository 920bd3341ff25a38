"""Reading one request (``MessageReader``, mixed into ``shared.serving.http.connection.EdgeHTTP``): httptools' parser
callbacks, the limits they enforce (``shared.serving.http.limits``) and the connection's ``Phase`` they move.
Complete requests, and requests that failed while being read, go on the connection's queue in arrival
order; the connection answers them in that order.

HTTP: 1.0 and 1.1 only (505 otherwise); HTTP/1.1 needs exactly one ``Host`` (400); ``Transfer-Encoding``
other than ``chunked`` is refused (400); malformed HTTP gets 400 and a close; ``Expect: 100-continue`` is
answered; an ``Upgrade`` request gets 400 ``upgrade_unsupported`` and a close.
"""

from __future__ import annotations

import time

from strata.shared.errors import (
    HeadersTooLarge,
    HttpVersionNotSupported,
    MalformedHttp,
    PayloadTooLarge,
    StrataError,
)
from strata.shared.serving.asgi import too_large
from strata.shared.serving.front_door import content_encoding_error
from strata.shared.serving.http.limits import MAX_HEADER_BYTES, MAX_PIPELINE
from strata.shared.serving.http.phase import BODY, CLOSING, HEADERS, IDLE
from strata.shared.serving.http.state import ConnectionState, Request


def upgrade_unsupported() -> MalformedHttp:
    err = MalformedHttp("protocol upgrades are not supported", field="upgrade")
    err.code = "upgrade_unsupported"
    return err


class MessageReader(ConnectionState):
    """httptools' callbacks for one connection. Complete requests (and requests that failed while being
    read) go on ``queue`` in arrival order; the connection answers them (``_drain``)."""

    __slots__ = ()

    # -- failures while reading --------------------------------------------------------------------
    def _raw_limit(self) -> None:
        limit = self.server.max_raw
        if self.phase is HEADERS:
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
        if last is not None and self.phase is not HEADERS and self.phase is not BODY and last.error is None \
                and last in self.queue:
            last.error = upgrade_unsupported()
            last.keep_alive = False
            self._pause()
        else:
            self._fail(upgrade_unsupported())

    def _fail(self, error: StrataError) -> None:
        """Bytes that cannot be parsed: answer in order, then close. The error belongs to the open
        message, or to bytes after the last complete request, never to a complete request."""
        if self.phase is HEADERS or self.phase is BODY:
            self._fail_current(error)
            return
        last = self.last
        if last is not None and not last.keep_alive:
            self._pause()           # bytes after "Connection: close": the close answers them
            return
        req = Request()
        req.queued = True
        req.error = error
        req.keep_alive = False
        req.t0 = time.perf_counter_ns()
        self.queue.append(req)
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
        if self.phase is not CLOSING:
            self.phase = IDLE
        self.queue.append(req)
        self._pause()
        if not self.busy and self.turn is None:
            self._drain()

    # -- parser callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.req = Request()
        self.body_parts = []
        self.body_size = 0
        self.header_bytes = 0
        self.expect_continue = False
        if self.phase is not CLOSING:
            self.phase = HEADERS
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
        if self.phase is not HEADERS:       # a trailer field: counted above, otherwise ignored
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
        elif name == b"authorization":
            if req.authorization is None:
                req.authorization = value
        elif name == b"transfer-encoding":
            if value.strip().lower() != b"chunked" and req.error is None:
                req.error = MalformedHttp(f"Transfer-Encoding {value.decode('latin-1')!r} is not supported; "
                                          "only 'chunked'", field="transfer-encoding")
        elif name == b"content-encoding":
            if req.reject is None:
                req.reject = content_encoding_error(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        elif name == b"x-request-id":
            req.request_id = value
        elif name == b"traceparent":
            req.traceparent = value

    def on_headers_complete(self) -> None:
        if self.phase is HEADERS:           # (not after a failure: the request is answered, not read on)
            self.phase = BODY
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
        if self.phase is not CLOSING:
            self.phase = IDLE
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

