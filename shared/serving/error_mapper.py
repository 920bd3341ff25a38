"""The one place where an error becomes an HTTP answer: status, headers and body.

Every front door (the edge's own HTTP server, its ASGI app, the FastAPI apps of tiers 2 and 3) calls
``error_reply`` (or ``negotiated_error_reply``) and nothing else. The body is always

    {"error": {"code": ..., "field": ... or null, "reason": ...}, "retriable": bool}

in the negotiated codec, plus ``"request_id"`` for 5xx answers. ``retriable`` is what clients and
upstream callers branch on: true for 503 (a dependency is down; ``Retry-After`` says when to come
back), false for client mistakes. An exception that is not a ``StrataError`` is a bug: it is logged
with its traceback and a request id, and the client gets a 500 with the same id, never a dropped
connection.
"""

from __future__ import annotations

import logging
import math
import os

from strata.shared.errors import InternalError, MethodNotAllowed, StrataError, Unauthorized
from strata.shared.serving.codecs import JSON, choose_response_type, encode
from strata.shared.serving.pipeline import Reply

logger = logging.getLogger(__name__)


def new_request_id() -> str:
    return os.urandom(8).hex()


def error_body(exc: StrataError, request_id: str | None = None) -> dict:
    body = exc.to_dict()
    body["retriable"] = exc.retriable
    if request_id is not None and exc.status >= 500:
        body["request_id"] = request_id
    return body


def error_reply(exc: BaseException, media: str = JSON, request_id: str | None = None) -> Reply:
    """Map any exception to a Reply. Unexpected exceptions are logged here, with their traceback."""
    if not isinstance(exc, StrataError):
        request_id = request_id or new_request_id()
        logger.error("unexpected error answering a request", exc_info=exc, extra={"request_id": request_id})
        exc = InternalError(f"internal error; the server log has it under request id {request_id}")
    elif exc.status >= 500 and request_id is None:
        request_id = new_request_id()
        logger.warning("answering %d %s: %s", exc.status, exc.code, exc.reason, extra={"request_id": request_id})
    headers: list[tuple[bytes, bytes]] = []
    if exc.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", exc.allow.encode("latin-1")))
    elif isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="strata"'))
    if request_id is not None and exc.status >= 500:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    return Reply(exc.status, media, encode(error_body(exc, request_id), media), tuple(headers))


def negotiated_error_reply(exc: BaseException, accept: str | bytes | None, ctype: str | bytes | None,
                           request_id: str | None = None) -> Reply:
    """``error_reply`` in the codec the answer would have used (``Accept``, else the request's type)."""
    try:
        media = choose_response_type(accept, ctype)
    except Exception:   # a header we cannot even read: answer in JSON
        media = JSON
    return error_reply(exc, media, request_id)
