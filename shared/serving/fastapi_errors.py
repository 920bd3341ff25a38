"""FastAPI front doors answer errors through the one mapper (``shared.serving.error_mapper``), in its shape.

``install_error_handlers(app)`` routes ``StrataError``, FastAPI's 422 validation errors, Starlette's
404/405 and any unexpected exception to ``error_reply``; the answer uses the codec the caller
negotiated (``Accept``, else the request's ``Content-Type``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from strata.shared.errors import InvalidField, MethodNotAllowed, NotFound, StrataError
from strata.shared.serving.error_mapper import negotiated_error_reply
from strata.shared.serving.pipeline import Reply


def to_response(reply: Reply) -> Response:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in reply.headers}
    return Response(reply.body, status_code=reply.status, media_type=reply.media, headers=headers)


def _answer(request: Request, exc: BaseException) -> Response:
    return to_response(negotiated_error_reply(exc, request.headers.get("accept"), request.headers.get("content-type")))


def http_exception_error(exc: StarletteHTTPException, request: Request) -> StrataError:
    """Starlette's routing errors as project errors (so their bodies have the documented shape)."""
    if exc.status_code == 404:
        return NotFound(f"no route {request.url.path}", field="path")
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"{request.method} not allowed on {request.url.path}; use {allow or 'another method'}",
                                allow=allow)
    err = StrataError(str(exc.detail), field=None)
    err.status = exc.status_code
    err.code = "http_error"
    return err


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StrataError)
    async def _strata(request: Request, exc: StrataError) -> Response:
        return _answer(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _answer(request, http_exception_error(exc, request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or None
        return _answer(request, InvalidField(str(first.get("msg")), field=field))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return _answer(request, exc)
