"""The origin's FastAPI front door. It only moves bytes: recommend and explain go to their ``Handler``,
items to the node; every error is answered by ``shared.serving.error_mapper`` (through ``shared.serving.fastapi_errors``)."""

from __future__ import annotations

import contextlib
import time

from fastapi import FastAPI, Request, Response

from strata.origin.node import OriginNode
from strata.shared.contracts.origin import parse_items
from strata.shared.errors import PayloadTooLarge
from strata.shared.serving.codecs import choose_response_type, decode, encode
from strata.shared.serving.fastapi_errors import install_error_handlers, to_response
from strata.shared.serving.fastapi_ops import install_ops_routes
from strata.shared.serving.pipeline import Handler, Reply


def build_app(node: OriginNode) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    api = FastAPI(title="Strata origin", version="1", lifespan=lifespan,
                  description="Tier 3: retrieval, ranking, guardrails and grounded explanations.")
    install_error_handlers(api)
    max_body = node.cfg.max_body_bytes

    async def body_of(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise PayloadTooLarge(f"body of {length} bytes exceeds the {max_body}-byte limit", field="body")
        body = await request.body()
        if len(body) > max_body:
            raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the {max_body}-byte limit", field="body")
        return body

    async def run(handler: Handler, request: Request) -> Response:
        t0 = time.perf_counter_ns()
        status = 500
        try:
            body = await body_of(request)
            h = request.headers
            ctype = h.get("content-type")
            accept = h.get("accept")
            out = handler.try_now(body, ctype.encode() if ctype else None, accept.encode() if accept else None)
            reply: Reply = out if isinstance(out, Reply) else await handler.finish(out)
            status = reply.status
            return to_response(reply)
        except Exception as exc:
            status = getattr(exc, "status", 500)
            raise
        finally:
            node.metrics.answered(handler.route, status, t0)

    @api.post("/v1/recommend")
    async def recommend(request: Request) -> Response:
        return await run(node.recommend, request)

    @api.post("/v1/explain")
    async def explain(request: Request) -> Response:
        return await run(node.explain, request)

    @api.post("/v1/items")
    async def items(request: Request) -> Response:
        t0 = time.perf_counter_ns()
        status = 500
        try:
            body = await body_of(request)
            ctype = request.headers.get("content-type")
            state = node.state
            categories = state.catalog.category_names if state is not None else ()
            updates = parse_items(decode(body, ctype), categories)
            rows = node.upsert_items(updates)
            media = choose_response_type(request.headers.get("accept"), ctype)
            status = 200
            return Response(encode({"upserted": len(rows), "item_ids": [u.item_id for u in updates],
                                    "catalog_items": len(node.state.catalog)}, media), media_type=media)
        except Exception as exc:
            status = getattr(exc, "status", 500)
            raise
        finally:
            node.metrics.answered("/v1/items", status, t0)

    install_ops_routes(api, node)
    return api
