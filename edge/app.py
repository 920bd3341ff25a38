"""ASGI app: a raw fast path for ``POST /v1/recommend``; FastAPI serves ops routes and the docs.

The hot route skips framework routing and pydantic entirely (see issue 2's calibration: framework
overhead alone would eat the edge's budget).
"""

from __future__ import annotations

import logging
import time

import orjson
from fastapi import FastAPI, Response

from edge.service import EdgeService
from shared.codecs import encode
from shared.errors import MethodNotAllowed, PayloadTooLarge

logger = logging.getLogger(__name__)
RECOMMEND = "/v1/recommend"


def ops_app(svc: EdgeService) -> FastAPI:
    api = FastAPI(title="Strata edge", version="1", description="Tier 1: PoP-local ranking. "
                  "POST /v1/recommend takes JSON or msgpack (see README for the contract).")

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz(response: Response) -> dict:
        ranker = svc.ranker
        store = "none" if not svc.store.configured else ("ok" if svc.health.up else "down")
        if ranker is None:
            response.status_code = 503
            response.headers["Retry-After"] = "1"
            return {"ready": False, "reason": "no model loaded", "store": store}
        return {"ready": True, "model_version": ranker.version, "store": store,
                "degraded": store == "down"}

    @api.get("/metrics")
    def metrics() -> Response:
        return Response(svc.metrics.inst.exposition(), media_type="text/plain; version=0.0.4")

    return api


def build_app(svc: EdgeService):
    ops = ops_app(svc)
    max_body = svc.cfg.max_body_bytes

    async def reply(send, status: int, ctype: str, body: bytes, extra: list | None = None) -> None:
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def recommend(scope, receive, send) -> None:
        ctype = accept = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value
            elif name == b"accept":
                accept = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        if scope["method"] != "POST":
            err = MethodNotAllowed(f"{scope['method']} not allowed; use POST", field="method")
            return await reply(send, 405, "application/json", orjson.dumps(err.to_dict()), [(b"allow", b"POST")])
        if length > max_body:
            return await _too_large(send, reply, length, max_body)
        chunks = []
        size = 0
        while True:
            msg = await receive()
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > max_body:
                return await _too_large(send, reply, size, max_body)
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        status, out_type, payload = await svc.handle_recommend(body, ctype, accept)
        await reply(send, status, out_type, payload)

    async def lifespan(receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await svc.start()
                except Exception as exc:
                    logger.exception("edge failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await svc.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == RECOMMEND:
            return await recommend(scope, receive, send)
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        t0 = time.perf_counter_ns()
        await ops(scope, receive, send)
        if scope["type"] == "http":
            svc.metrics.route(scope["path"] if scope["path"] in ("/healthz", "/readyz", "/metrics") else "other",
                              200, t0)

    return app


def too_large(size: int, limit: int) -> PayloadTooLarge:
    """The 413 both HTTP paths (this ASGI app and edge.httpserver) answer with."""
    return PayloadTooLarge(f"body of {size} bytes exceeds the {limit}-byte limit", field="body")


async def _too_large(send, reply, size: int, limit: int) -> None:
    await reply(send, 413, "application/json", encode(too_large(size, limit).to_dict(), "application/json"))
