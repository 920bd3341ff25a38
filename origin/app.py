"""The origin's front door. It only moves bytes: recommend and explain are the shared raw route
(``shared.serving.front_door``) on their ``Handler``; items go to the node through FastAPI, which also serves
the ops routes and the docs. Every error is answered by ``shared.serving.error_mapper``."""

from __future__ import annotations

import contextlib
import time

from fastapi import FastAPI, Request, Response

from strata.origin.node import OriginNode
from strata.shared.auth.scopes import CATALOG_WRITE
from strata.shared.contracts import schemas
from strata.shared.contracts.origin import parse_items
from strata.shared.errors import Forbidden
from strata.shared.serving.asgi import too_large
from strata.shared.serving.codecs import choose_response_type, decode, encode
from strata.shared.serving.fastapi_errors import install_error_handlers
from strata.shared.serving.fastapi_ops import install_ops_routes
from strata.shared.serving.front_door import HandlerRoute, content_encoding_error, mount
from strata.shared.serving.openapi import Route, install_openapi


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
            raise too_large(int(length), max_body)
        rejected = content_encoding_error(request.headers.get("content-encoding", "").encode("latin-1") or None)
        if rejected is not None:
            raise rejected
        body = await request.body()
        if len(body) > max_body:
            raise too_large(len(body), max_body)
        return body

    gate = node.gate
    for handler in (node.recommend, node.explain):
        mount(api, HandlerRoute(handler, max_body=max_body, recorder=node.metrics, gate=gate))

    @api.post("/v1/items")
    async def items(request: Request) -> Response:
        t0 = time.perf_counter_ns()
        status = 500
        try:
            caller = None
            if gate is not None:
                caller = gate.admit(request.scope["headers"], request.scope.get("client"), CATALOG_WRITE)
                if caller is not None and caller.tenant != node.catalog_tenant:
                    raise Forbidden(f"the catalog belongs to tenant {node.catalog_tenant!r}; this key's tenant "
                                    f"is {caller.tenant!r}", field="Authorization")
            body = await body_of(request)
            ctype = request.headers.get("content-type")
            state = node.state
            categories = state.catalog.category_names if state is not None else ()
            updates = parse_items(decode(body, ctype), categories)
            rows, kept = await node.upsert(updates, caller.tenant if caller else None,
                                           caller.key_id if caller else None)
            media = choose_response_type(request.headers.get("accept"), ctype)
            status = 200
            return Response(encode({"upserted": len(rows), "item_ids": [u.item_id for u in updates],
                                    "catalog_items": len(node.state.catalog), "restrictions_kept": kept}, media),
                            media_type=media)
        except Exception as exc:
            status = getattr(exc, "status", 500)
            raise
        finally:
            node.metrics.answered("/v1/items", status, t0)

    install_ops_routes(api, node)

    def routes() -> list[Route]:
        state = node.state
        categories = tuple(state.catalog.category_names) if state is not None else None
        return [
            Route("/v1/recommend", "retrieve and rank (two-tower, content, co-visitation, popular; deep ranker)",
                  schemas.ORIGIN_RECOMMEND_REQUEST, schemas.ORIGIN_RECOMMEND_ANSWER),
            Route("/v1/explain", "rank and give one grounded reason per item", schemas.ORIGIN_EXPLAIN_REQUEST,
                  schemas.EXPLAIN_ANSWER, description="`reasoner` says who wrote the reasons, `fallback` why the "
                                                      "configured LLM did not (null when it did)."),
            Route("/v1/items", "upsert catalog items", lambda: schemas.items_request(categories),
                  schemas.ITEMS_ANSWER),
        ]

    install_openapi(api, api.description, routes)
    return api
