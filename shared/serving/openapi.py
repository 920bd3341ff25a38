"""Each tier's ``/openapi.json``, built from the contracts' JSON Schemas (``shared.contracts.schemas``): every route
the tier serves, its request body and answers in both codecs (JSON and msgpack), and its error answers in the one
error shape (``shared.serving.error_mapper``). FastAPI only serves the document and the ``/docs`` page; its own
route introspection is not used (the hot routes are raw ASGI, which it cannot see).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI

from strata.shared.contracts import schemas
from strata.shared.serving.codecs import JSON, MSGPACK

MEDIA = (JSON, MSGPACK)
ERRORS = {
    400: "malformed body (not JSON/msgpack, or not an object)",
    405: "another method than the route's; `Allow` names it",
    413: "body over the tier's limit (checked before it is read)",
    415: "a Content-Type other than JSON or msgpack, or a Content-Encoding (bodies are read as sent)",
    422: "a field has the wrong type or value; `error.field` names it",
    500: "a bug: the answer's request id is the server log's",
    503: "not ready (no model) or a dependency is down; `Retry-After` says when to come back",
}
_HEADERS = {405: {"Allow": {"schema": {"type": "string"}, "description": "the methods the route serves"}},
            503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}}


@dataclass(frozen=True)
class Route:
    """One POST route that takes and answers JSON or msgpack."""

    path: str
    summary: str
    request: dict | Callable[[], dict]        # the body's schema (a callable: built per document, e.g. from the catalog)
    answer: dict
    status: int = 200
    description: str = ""
    errors: Sequence[int] = (400, 413, 415, 422, 500, 503)
    error_schema: dict = field(default_factory=lambda: schemas.ERROR)


def _content(schema: dict) -> dict:
    return {m: {"schema": schema} for m in MEDIA}


def _error(status: int, schema: dict = schemas.ERROR) -> dict:
    out = {"description": ERRORS[status], "content": _content(schema)}
    if status in _HEADERS:
        out["headers"] = _HEADERS[status]
    return out


def _post(route: Route) -> dict:
    request = route.request() if callable(route.request) else route.request
    responses = {str(route.status): {"description": "the answer", "content": _content(route.answer)}}
    responses.update({str(s): _error(s, route.error_schema) for s in route.errors})
    return {"post": {"summary": route.summary, "description": route.description,
                     "operationId": route.path.strip("/").replace("/", "_"),
                     "requestBody": {"required": True, "content": _content(request)}, "responses": responses}}


OPS_PATHS = {
    "/healthz": {"get": {"summary": "liveness", "operationId": "healthz", "responses": {
        "200": {"description": "the process answers", "content": {JSON: {"schema": schemas.HEALTH}}}}}},
    "/readyz": {"get": {"summary": "readiness", "operationId": "readyz", "responses": {
        "200": {"description": "ready to serve", "content": {JSON: {"schema": schemas.READINESS}}},
        "503": {"description": "not ready yet (no model, no broker ...)", "headers": _HEADERS[503],
                "content": {JSON: {"schema": schemas.READINESS}}}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": {
        "200": {"description": "the Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}


def document(title: str, description: str, routes: Sequence[Route], extra_paths: dict | None = None) -> dict:
    """The OpenAPI 3.1 document of a tier serving ``routes`` plus the ops routes."""
    paths = {r.path: _post(r) for r in routes}
    paths.update(extra_paths or {})
    paths.update(OPS_PATHS)
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1", "description": description},
            "paths": paths}


def install_openapi(api: FastAPI, description: str, routes: Callable[[], Sequence[Route]],
                    extra_paths: Callable[[], dict] | None = None) -> None:
    """Serve the document at the app's ``/openapi.json`` (and so ``/docs``), rebuilt on each request (cheap; the
    origin's item categories follow its catalog)."""
    api.openapi = lambda: document(api.title, description, routes(), extra_paths() if extra_paths else None)
