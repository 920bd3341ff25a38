"""ASGI front door of the streaming service: it only moves bytes. ``POST /v1/events`` runs the
``IngestHandler``, ``POST /v1/recommend`` the tier-2 scorer (``streaming.tier2``, when given); /healthz,
/readyz and /metrics read both; every error is answered by ``shared.serving.error_mapper``."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response

from strata.shared.auth.gate import Gate
from strata.shared.auth.scopes import EVENTS
from strata.shared.contracts import schemas
from strata.shared.errors import PayloadTooLarge
from strata.shared.serving.asgi import body_headers, receive_body, send_reply, too_large
from strata.shared.serving.error_mapper import negotiated_error_reply
from strata.shared.serving.fastapi_errors import install_error_handlers, to_response
from strata.shared.serving.fastapi_ops import install_ops_routes
from strata.shared.serving.openapi import Route, install_openapi
from strata.shared.serving.pipeline import Reply
from strata.streaming.service import IngestService
from strata.streaming.tier2.front import mount_recommend
from strata.streaming.users import UserData
from strata.streaming.users_routes import mount_users

if TYPE_CHECKING:     # the ingest-only app does not load onnxruntime
    from strata.streaming.tier2.service import Tier2Service


class _Ops:
    """/readyz and /metrics of the whole service: ready when ingest and the tier-2 scorer are."""

    def __init__(self, ingest: IngestService, tier2: Tier2Service | None, gate: Gate | None = None) -> None:
        self.ingest = ingest
        self.tier2 = tier2
        self.gate = gate

    def readiness(self) -> tuple[int, dict]:
        status, body = self.ingest.readiness()
        if self.tier2 is None:
            return status, body
        t_status, t_body = self.tier2.readiness()
        return max(status, t_status), {**body, "ready": status == t_status == 200, "tier2": t_body}

    def exposition(self) -> bytes:
        out = self.ingest.exposition()
        if self.tier2 is not None:
            out += self.tier2.exposition()
        return out + self.gate.exposition() if self.gate is not None else out


def build_app(service: IngestService, tier2: Tier2Service | None = None, gate: Gate | None = None) -> FastAPI:
    """``gate``: authentication and rate limits of every route but the ops routes (None: off)."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            if tier2 is not None:
                await tier2.start()
            if gate is not None:
                await gate.start()
            yield
        finally:
            try:
                if gate is not None:
                    await gate.stop()
                if tier2 is not None:
                    await tier2.stop()
            finally:
                await users.close()
                await service.stop()

    api = FastAPI(title="Strata streaming", version="1", lifespan=lifespan,
                  description="Tier 2: POST /v1/events takes one event or {\"events\": [...]}; POST /v1/recommend "
                              "ranks from the store's freshest session state. JSON or msgpack.")
    install_error_handlers(api)
    handler = service.handler
    limit = service.cfg.max_body_bytes

    @api.post(handler.route, status_code=202)
    async def events(request: Request) -> Response:     # documents the route; ``_Front`` answers it
        caller = gate.admit(request.scope["headers"], request.scope.get("client"), EVENTS) \
            if gate is not None else None
        try:
            body = await _bounded_body(request, limit)
        except PayloadTooLarge as exc:
            await handler.dead_letter_unread(exc, int(request.headers.get("content-length") or limit + 1))
            raise
        ctype = request.headers.get("content-type")
        accept = request.headers.get("accept")
        out = handler.try_now(body, ctype.encode("latin-1") if ctype else None,
                              accept.encode("latin-1") if accept else None, caller)
        reply: Reply = out if isinstance(out, Reply) else await handler.finish(out)
        return to_response(reply)

    users = UserData(service.cfg.store, grace_s=service.cfg.erasure_grace_s,
                     tombstone_ttl_s=service.cfg.tombstone_ttl_s)
    mount_users(api, users, gate)
    if tier2 is not None:
        mount_recommend(api, tier2, limit, gate)
    install_ops_routes(api, _Ops(service, tier2, gate))
    routes = [Route(handler.route, "append click-stream events to the log", schemas.events_request(service.cfg.max_events),
                    schemas.EVENTS_ANSWER, status=202,
                    description="Each event is validated; valid ones are appended (acks=all) before the answer, "
                                "invalid ones dead-lettered and listed under `rejected` (422 when none is valid).")]
    if tier2 is not None:
        routes.append(Route("/v1/recommend", "rank items from the freshest session state (tier 2)",
                            schemas.RECOMMEND_REQUEST, schemas.RANKED_ANSWER))
    install_openapi(api, api.description, lambda: routes)
    return _Front(api, service, gate)


class _Front:
    """The ASGI app uvicorn runs: ``POST /v1/events`` straight to the ingest pipeline (the hot path: no
    routing, request object or middleware per request), everything else to FastAPI; every answer counted by
    status (``requests_total``)."""

    def __init__(self, api: FastAPI, service: IngestService, gate: Gate | None = None) -> None:
        self.api = api
        self.gate = gate
        self.handler = service.handler
        self.route = service.handler.route
        self.limit = service.cfg.max_body_bytes
        self.metrics = service.metrics
        self.metrics.define("request_seconds", "server-side latency of POST /v1/events")
        self.latency = self.metrics.histogram("request_seconds")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.api(scope, receive, send)         # lifespan, websocket (refused by FastAPI)
        if scope["path"] == self.route and scope["method"] == "POST":
            t0 = time.perf_counter()
            await self._events(scope, receive, send)
            self.latency.observe(time.perf_counter() - t0)
            return
        metrics = self.metrics

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                metrics.inc("requests_total", (str(message["status"]),))
            await send(message)

        await self.api(scope, receive, counted)

    async def _events(self, scope, receive, send) -> None:
        ctype, accept, length, _ = body_headers(scope)
        caller = None
        try:
            if self.gate is not None:
                caller = self.gate.admit(scope["headers"], scope.get("client"), EVENTS)
            try:
                if length > self.limit:
                    raise too_large(length, self.limit)
                body = await receive_body(receive, self.limit)
            except PayloadTooLarge as exc:      # not read: dead-lettered with its size (best effort)
                await self.handler.dead_letter_unread(exc, max(length, self.limit + 1))
                raise
            if body is None:
                return                  # the client went away: nothing to answer, nothing appended
            out = self.handler.try_now(body, ctype, accept, caller)
            reply = out if isinstance(out, Reply) else await self.handler.finish(out)
        except Exception as exc:        # StrataError -> its status; anything else -> 500 (the one mapper)
            reply = negotiated_error_reply(exc, accept, ctype)
        self.metrics.inc("requests_total", (str(reply.status),))
        await send_reply(send, reply)


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413, field ``body``) when its declared or actual size exceeds ``limit``."""
    size = int(request.headers.get("content-length") or 0)
    if size > limit:
        raise too_large(size, limit)
    body = await request.body()
    if len(body) > limit:
        raise too_large(len(body), limit)
    return body
