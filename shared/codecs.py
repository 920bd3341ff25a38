"""JSON and msgpack bodies, chosen by ``Content-Type`` (in) and ``Accept`` (out).

Both codecs decode to plain dicts/lists so one validator serves both.
"""

from __future__ import annotations

import msgpack
import orjson

from shared.errors import MalformedBody, UnsupportedMediaType

JSON = "application/json"
MSGPACK = "application/msgpack"
_MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
_JSON_TYPES = frozenset({"application/json", "text/json"})


def media_type(header: str | bytes | None) -> str:
    """Normalised media type without parameters ("application/json; charset=utf-8" -> "application/json")."""
    if not header:
        return ""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    return header.split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | bytes | None) -> object:
    """Decode a request body. Missing Content-Type is read as JSON (curl's default is form data, refused)."""
    mt = media_type(content_type)
    if mt in _JSON_TYPES or mt == "":
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from None
    if mt in _MSGPACK_TYPES:
        try:
            return msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise MalformedBody(f"body is not valid msgpack: {type(exc).__name__}: {exc}", field="body") from None
    raise UnsupportedMediaType(
        f"Content-Type '{mt}' is not supported; use {JSON} or {MSGPACK}", field="Content-Type"
    )


def choose_response_type(accept: str | bytes | None, request_type: str | bytes | None) -> str:
    """msgpack if the caller asks for it; otherwise mirror a msgpack request; otherwise JSON."""
    if accept:
        if isinstance(accept, bytes):
            accept = accept.decode("latin-1")
        acc = accept.lower()
        if "msgpack" in acc:
            return MSGPACK
        if "json" in acc:
            return JSON
    return MSGPACK if media_type(request_type) in _MSGPACK_TYPES else JSON


def encode(obj: object, media: str) -> bytes:
    if media == MSGPACK:
        return msgpack.packb(obj, use_bin_type=True)
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
