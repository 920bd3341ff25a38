"""One raw-ASGI route for any ``Handler``: what every tier's hot route does between the socket and the
request path, written once.

    method check -> gate (``shared.auth.gate``: 401/403/429 before the body is read; skipped without one)
    -> headers -> bounded body (413 before reading past the limit) -> Content-Encoding check (415: bodies are
    read as sent) -> ``try_now`` / ``finish`` (with the caller: its tenant is the request's) -> error reply
    (``error_mapper``) -> send -> per-route metrics (``Recorder.answered`` with the real status)

A request that brings ``X-Request-ID`` or ``traceparent`` (another tier's router does) runs with them as its
trace context (``shared.serving.trace.TRACE``: calls made while answering it forward them) and is logged
once, as JSON, with both (``log_traced``), so one request id is found in every tier's log.

It skips framework routing and pydantic: the edge mounts it as its ASGI app's hot route, tier 2 and the
origin mount it in their FastAPI apps (``mount``), which keep only the ops routes and the docs. A client
that disconnects before its body ended gets no answer (there is nobody to answer).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from strata.shared.auth.gate import Gate
from strata.shared.auth.scopes import ROUTE_SCOPES
from strata.shared.errors import MethodNotAllowed, PayloadTooLarge, StrataError, UnsupportedMediaType
from strata.shared.serving.asgi import body_headers, receive_body, send_reply, too_large
from strata.shared.serving.codecs import JSON
from strata.shared.serving.error_mapper import error_reply, negotiated_error_reply
from strata.shared.serving.logs import log_fields
from strata.shared.serving.pipeline import Handler, Reply
from strata.shared.serving.trace import TRACE, Trace, scope_trace

logger = logging.getLogger(__name__)


class Recorder(Protocol):
    def answered(self, route: str, status: int, t0_ns: int) -> None: ...


def content_encoding_error(value: bytes | None) -> StrataError | None:
    """Bodies are read as sent: a ``Content-Encoding`` other than identity is refused (415), not misread."""
    if value is None:
        return None
    coding = value.strip().lower()
    if coding in (b"", b"identity"):
        return None
    return UnsupportedMediaType(f"Content-Encoding {coding.decode('latin-1')!r} is not supported; send the body "
                                "uncompressed", field="Content-Encoding")


class HandlerRoute:
    """The ASGI app of one ``POST`` route served by ``handler`` (an object, so Starlette mounts it as ASGI)."""

    __slots__ = ("handler", "route", "max_body", "recorder", "log_traced", "gate", "scope")

    def __init__(self, handler: Handler, *, max_body: int, recorder: Recorder, log_traced: bool = True,
                 gate: Gate | None = None) -> None:
        self.handler = handler
        self.route = handler.route
        self.max_body = max_body
        self.recorder = recorder
        self.log_traced = log_traced    # log requests that carry a request id / traceparent
        self.gate = gate
        self.scope = ROUTE_SCOPES[handler.route]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        trace = scope_trace(scope)
        if trace is None:
            await self._answer(scope, receive, send)
            return None
        t0 = time.perf_counter_ns()
        token = TRACE.set(trace)
        try:
            status = await self._answer(scope, receive, send)
        finally:
            TRACE.reset(token)
        if self.log_traced:
            _log_traced(trace, self.route, status, t0)
        return None

    async def _answer(self, scope: dict[str, Any], receive: Any, send: Any) -> int:
        t0 = time.perf_counter_ns()
        ctype, accept, length, coding = body_headers(scope)
        max_body = self.max_body
        caller = None
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} not allowed; use POST")
            if self.gate is not None:
                caller = self.gate.admit(scope["headers"], scope.get("client"), self.scope)
            if length > max_body:
                raise too_large(length, max_body)
            body = await receive_body(receive, max_body)
            if body is None:
                return 0        # the client went away before its body ended: nobody to answer
        except (MethodNotAllowed, PayloadTooLarge) as exc:   # decided before the body: always JSON
            r = error_reply(exc, JSON)
        except StrataError as exc:                           # the gate: 401/403/429 in the caller's codec
            r = negotiated_error_reply(exc, accept, ctype)
        else:
            rejected = content_encoding_error(coding)
            if rejected is not None:
                r = negotiated_error_reply(rejected, accept, ctype)
            else:
                handler = self.handler
                try:
                    out = handler.try_now(body, ctype, accept, caller)
                    r = out if isinstance(out, Reply) else await handler.finish(out)
                except Exception as exc:
                    r = negotiated_error_reply(exc, accept, ctype)
        await send_reply(send, r)
        self.recorder.answered(self.route, r.status, t0)
        return r.status


def _log_traced(trace: Trace, route: str, status: int, t0: int) -> None:
    if logger.isEnabledFor(logging.INFO):
        log_fields(logger, logging.INFO, "answered", {"request_id": trace.request_id, "traceparent": trace.traceparent,
                                                      "route": route, "status": status,
                                                      "ms": round((time.perf_counter_ns() - t0) / 1e6, 3)})


def mount(api: Any, route: HandlerRoute) -> None:
    """Serve ``route`` from a FastAPI/Starlette app, ahead of its framework routes (every method reaches the
    handler route, which answers 405 itself with the error shape)."""
    from starlette.routing import Route

    api.router.routes.insert(0, Route(route.route, route, include_in_schema=False))
