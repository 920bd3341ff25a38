"""A minimal HTTP/1.1 client for one upstream endpoint: pooled keep-alive connections, msgpack POSTs, a
deadline per request. Responses are parsed by ``httptools`` (llhttp, the parser uvicorn uses; already an
edge dependency), so chunked bodies, ``Connection: close`` and HTTP/1.0 peers are handled by a real parser.

Why not a general client: the router's own cost is budgeted at 150 µs of edge CPU per escalated request.
Measured on this machine against a local server answering at once (client CPU per request, sequential /
8 concurrent, msgpack body decoded): this client 85 / 29 µs, pyreqwest 129 / 70, aiohttp 289 / 117,
aiosonic 316 / 121, httpx 1,261 / 1,613 (``docs/router.md`` has the table and the command). A general
client pays for cookies, redirects, proxies and per-request objects the router never uses.

One request per connection at a time (no pipelining); an idle connection goes back to the pool, one that
timed out or failed is closed (its answer may still come and must not be read as the next one's). A
request on a reused connection that is lost before any byte of the answer arrived is retried once on a
new connection (the server closed it while idle: it never saw the request).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools

CONNECT_LIMIT = 64          # connections per endpoint; beyond it a request fails at once (no queue)


class UpstreamError(Exception):
    """The endpoint failed: connection refused or lost, a malformed answer, the connection limit."""


class UpstreamTimeout(UpstreamError):
    """No complete answer by the deadline."""


class _Connection(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "waiter", "chunks", "received", "closed", "keep_alive")

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.chunks: list[bytes] = []
        self.received = False       # any byte of the current answer arrived
        self.closed = False
        self.keep_alive = True

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]  # a stream connection's transport is a Transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.pool.open -= 1
        self._fail(_Lost(f"connection lost{': ' + str(exc) if exc else ''}", self.received))

    # -- httptools callbacks -------------------------------------------------------------------------
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        self.waiter = None
        chunks = self.chunks
        self.chunks = []
        self.keep_alive = self.parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), chunks[0] if len(chunks) == 1 else b"".join(chunks)))

    # -- ours ----------------------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        """Abort (an answer that may still come must never be read as another request's)."""
        if not self.closed:
            self.closed = True
            self.pool.open -= 1
            if self.transport is not None:
                self.transport.abort()


class _Lost(UpstreamError):
    def __init__(self, message: str, received: bool) -> None:
        super().__init__(message)
        self.received = received


def _timed_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("no answer by the deadline"))


class HttpPool:
    """Keep-alive connections to one base URL (``http://host:port`` or ``https://...``)."""

    __slots__ = ("url", "host", "port", "ssl", "head", "idle", "open", "limit", "connects")

    def __init__(self, url: str, limit: int = CONNECT_LIMIT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an upstream URL is http:// or https:// with a host, got {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host = parts.netloc.rsplit("@", 1)[-1]
        self.head = b" HTTP/1.1\r\nhost: " + host.encode("idna") + (
            b"\r\ncontent-type: application/msgpack\r\naccept: application/msgpack\r\ncontent-length: ")
        self.idle: list[_Connection] = []
        self.open = 0
        self.limit = limit
        self.connects = 0

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        if self.open >= self.limit:
            raise UpstreamError(f"{self.limit} connections to {self.url} busy")
        self.open += 1
        self.connects += 1
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                                                       server_hostname=self.host if self.ssl else None)
        except TimeoutError:
            self.open -= 1
            raise UpstreamTimeout(f"no connection to {self.url} by the deadline") from None
        except OSError as exc:
            self.open -= 1
            raise UpstreamError(f"cannot connect to {self.url}: {exc}") from None
        return conn

    async def post(self, path: bytes, body: bytes, headers: bytes, deadline: float,
                   loop: asyncio.AbstractEventLoop | None = None) -> tuple[int, bytes]:
        """(status, body) of ``POST path`` by ``deadline`` (event-loop time). ``headers``: extra header lines,
        each ending in CRLF. ``loop``: the running loop when the caller has it (``asyncio.get_running_loop`` is a
        ``getpid`` system call each on Python 3.11). Raises ``UpstreamTimeout`` or ``UpstreamError``."""
        if loop is None:
            loop = asyncio.get_running_loop()
        request = b"".join((b"POST ", path, self.head, str(len(body)).encode(), b"\r\n", headers, b"\r\n", body))
        for attempt in (0, 1):
            conn = None
            idle = self.idle
            while idle:
                c = idle.pop()
                if not c.closed:
                    conn = c
                    break
            reused = conn is not None
            if conn is None:
                conn = await self._connect(loop, deadline)
            waiter = conn.waiter = loop.create_future()
            conn.received = False
            conn.transport.write(request)       # type: ignore[union-attr]  # idle or just connected: it has one
            timer = loop.call_at(deadline, _timed_out, waiter)
            try:
                status, payload = await waiter
            except _Lost as exc:
                if reused and not exc.received and attempt == 0 and loop.time() < deadline:
                    continue                    # closed while idle: the server never saw it
                raise UpstreamError(str(exc)) from None
            except BaseException:               # timeout, malformed, cancelled: never reuse this connection
                conn.close()
                raise
            finally:
                timer.cancel()
            if conn.keep_alive and not conn.closed:
                idle.append(conn)
            else:
                conn.close()
            return status, payload
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
