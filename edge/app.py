"""ASGI front door: the shared raw route (``shared.serving.front_door``) for ``POST /v1/recommend``; FastAPI
serves ops routes and the docs.

It only moves bytes: the request path is the ``Handler`` (``edge.recommend``), /readyz and /metrics
read the ``OpsView``, every answer is recorded with its real status, and every error goes through
``shared.serving.error_mapper``. The hot route skips framework routing and pydantic (framework overhead alone
would eat the edge's budget). The edge's own HTTP server (``edge.http``) answers the hot route inline
and uses this app for everything else.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from strata.shared.auth.gate import Gate
from strata.shared.contracts.schemas import RANKED_ANSWER, RECOMMEND_REQUEST
from strata.shared.serving.asgi import send_reply
from strata.shared.serving.codecs import JSON
from strata.shared.serving.error_mapper import error_reply
from strata.shared.serving.fastapi_errors import install_error_handlers
from strata.shared.serving.fastapi_ops import OPS_ROUTES, OpsView, install_ops_routes
from strata.shared.serving.front_door import HandlerRoute, Recorder, content_encoding_error
from strata.shared.serving.openapi import Route, install_openapi
from strata.shared.serving.pipeline import Handler

__all__ = ["OPS_ROUTES", "Recorder", "build_app", "content_encoding_error", "ops_app"]   # edge.http reads them
logger = logging.getLogger(__name__)


EDGE_ROUTES = (Route("/v1/recommend", "rank items from PoP-local state", RECOMMEND_REQUEST, RANKED_ANSWER,
                     description="Answers in a few ms from caches, the tiny scorer and cached posteriors; "
                                 "`route_tier` says which tier the router would ask (escalation)."),)


class Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def ops_app(ops: OpsView) -> FastAPI:
    # /docs and /redoc with their assets served by the edge itself (an offline PoP reaches no CDN)
    api = FastAPIOffline(title="Strata edge", version="1", description="Tier 1: PoP-local ranking. "
                         "POST /v1/recommend takes JSON or msgpack.",
                         swagger_ui_parameters={"validatorUrl": None})
    install_error_handlers(api)
    install_ops_routes(api, ops)
    install_openapi(api, api.description, lambda: EDGE_ROUTES)
    return api


def build_app(handler: Handler, ops: OpsView, recorder: Recorder, max_body: int,
              lifecycle: Lifecycle | None = None, gate: Gate | None = None):
    api = ops_app(ops)
    route = handler.route
    recommend = HandlerRoute(handler, max_body=max_body, recorder=recorder, gate=gate,
                             log_traced=False)   # the router logs

    async def ops_route(scope, receive, send) -> None:
        t0 = time.perf_counter_ns()
        state = {"status": 500, "started": False}

        async def send_seen(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                state["status"] = msg["status"]
                state["started"] = True
            await send(msg)

        try:
            await api(scope, receive, send_seen)
        except Exception as exc:   # Starlette re-raises after our handler answered; answer if it did not
            if not state["started"]:
                await send_reply(send_seen, error_reply(exc, JSON))
        finally:
            path = scope["path"]
            recorder.answered(path if path in OPS_ROUTES else "other", state["status"], t0)

    async def lifespan(receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    if lifecycle is not None:
                        await lifecycle.start()
                except Exception as exc:
                    logger.exception("edge failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if lifecycle is not None:
                    await lifecycle.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http":
            if scope["path"] == route:
                return await recommend(scope, receive, send)
            return await ops_route(scope, receive, send)
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        return await api(scope, receive, send)

    return app
