"""ASGI front door of the ingest API: it only moves bytes. ``POST /v1/events`` runs the ``IngestHandler``;
/healthz, /readyz and /metrics read the service; every error is answered by ``shared.error_mapper``."""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, Request, Response

from shared.errors import PayloadTooLarge
from shared.fastapi_errors import install_error_handlers, to_response
from shared.fastapi_ops import install_ops_routes
from shared.pipeline import Reply
from streaming.service import IngestService


def build_app(service: IngestService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    api = FastAPI(title="Strata streaming", version="1", lifespan=lifespan,
                  description="Tier 2 ingest: POST /v1/events takes one event or {\"events\": [...]}, "
                              "JSON or msgpack (see README for the contract).")
    install_error_handlers(api)
    handler = service.handler
    limit = service.cfg.max_body_bytes
    statuses = service.metrics

    @api.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        statuses.inc("requests_total", (str(response.status_code),))
        return response

    @api.post(handler.route, status_code=202)
    async def events(request: Request) -> Response:
        size = int(request.headers.get("content-length") or 0)
        if size > limit:
            raise PayloadTooLarge(f"body of {size} bytes exceeds the {limit}-byte limit", field="body")
        body = await request.body()
        if len(body) > limit:
            raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the {limit}-byte limit", field="body")
        ctype = request.headers.get("content-type")
        accept = request.headers.get("accept")
        out = handler.try_now(body, ctype.encode("latin-1") if ctype else None,
                              accept.encode("latin-1") if accept else None)
        reply: Reply = out if isinstance(out, Reply) else await handler.finish(out)
        return to_response(reply)

    install_ops_routes(api, service)
    return api
