"""Writing answers (``ResponseWriter``, mixed into ``shared.serving.http.connection.EdgeHTTP``): one
``transport.write`` per response, a ``Date`` header on every answer, keep-alive as the request asked
(HTTP/1.0 told explicitly), every answer of the server's own recorded with its route and real status, and
a lingering close after an answer that ends the connection (so a 413 is not destroyed by an RST)."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from strata.shared.serving.fastapi_ops import OPS_ROUTES
from strata.shared.serving.http.limits import LINGER_S
from strata.shared.serving.http.message import Request
from strata.shared.serving.http.phase import CLOSING
from strata.shared.serving.http.state import ConnectionState
from strata.shared.serving.pipeline import Reply

_STATUS_LINE = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CTYPES: dict[str, bytes] = {}
_HOP_BY_HOP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date"}
_date: list[Any] = [0, b""]      # [the second, its date line]
_OPS_B = {r.encode() for r in OPS_ROUTES}


def status_line(status: int) -> bytes:
    line = _STATUS_LINE.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Status\r\n".encode()


def date_line() -> bytes:
    """``date: <IMF-fixdate>\\r\\n``, formatted once per second."""
    now = int(time.time())
    if now != _date[0]:
        _date[0] = now
        _date[1] = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date[1]


def ctype(media: str) -> bytes:
    ct = _CTYPES.get(media)
    if ct is None:
        ct = _CTYPES[media] = media.encode("latin-1")
    return ct


def route_label(url: bytes, routes: frozenset[bytes]) -> str:
    """Metrics label of a request target: the route it names (one of ``routes`` or an ops route), or "other"
    (never the raw path)."""
    path = url.split(b"?", 1)[0]
    if path in routes or path in _OPS_B:
        return path.decode()
    return "other"


def head_bytes(status: int, headers: list[tuple[bytes, bytes]], length: int, keep_alive: bool,
               http10: bool) -> bytes:
    """Status line and headers of an answer with ``headers`` (hop-by-hop ones replaced by ours)."""
    lines = [status_line(status), date_line()]
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


class ResponseWriter(ConnectionState):
    __slots__ = ()

    def _write_reply(self, req: Request, r: Reply, keep_alive: bool) -> None:
        """Write one answer of this server's own (the hot route or an HTTP-layer error) and record it."""
        req.keep_alive = keep_alive
        if r.headers:
            self._write_headers(r.status, [(b"content-type", ctype(r.media)), *r.headers], r.body, req)
        else:
            self._write(r.status, r.media, r.body, req)
        server = self.server
        # route_name is None only with route None, which no request's URL equals
        label: str = server.route_name if req.url == server.route else route_label(req.url, server.labels)  # type: ignore[assignment]
        server.recorder.answered(label, r.status, req.t0 or time.perf_counter_ns())

    def _write(self, status: int, media: str, body: bytes, req: Request) -> None:
        keep_alive = req.keep_alive
        head = b"".join((status_line(status), date_line(), b"content-type: ", ctype(media),
                         b"\r\ncontent-length: ", str(len(body)).encode(),
                         b"\r\n\r\n" if keep_alive and not req.http10 else
                         b"\r\nconnection: keep-alive\r\n\r\n" if keep_alive else
                         b"\r\nconnection: close\r\n\r\n"))
        self.transport.write(head if req.head else head + body)
        if not keep_alive:
            self._close_after_write()

    def _write_headers(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, req: Request) -> None:
        head = head_bytes(status, headers, len(body), req.keep_alive, req.http10)
        self.transport.write(head if req.head else head + body)
        if not req.keep_alive:
            self._close_after_write()

    def _close_after_write(self) -> None:
        """Lingering close: send FIN after the answer, discard what the client still sends for a moment,
        then close. Closing at once while unread bytes sit in the socket makes the kernel send RST,
        which can destroy the answer (e.g. a 413) before the client reads it."""
        self.phase = CLOSING
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
