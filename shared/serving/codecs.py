"""JSON and msgpack bodies, chosen by ``Content-Type`` (in) and ``Accept`` (out).

Both codecs decode to plain dicts/lists so one validator serves both.
"""

from __future__ import annotations

import msgpack
import orjson

from strata.shared.errors import MalformedBody, UnsupportedMediaType

JSON = "application/json"
MSGPACK = "application/msgpack"
_MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
_JSON_TYPES = frozenset({"application/json", "text/json"})


def media_type(header: str | bytes | None) -> str:
    """Normalised media type without parameters ("application/json; charset=utf-8" -> "application/json")."""
    if not header:
        return ""
    mt = _MEDIA_CACHE.get(header)
    if mt is None:
        text = header.decode("latin-1") if isinstance(header, bytes) else header
        mt = text.split(";", 1)[0].strip().lower()
        if len(_MEDIA_CACHE) >= 1024:       # clients send a handful of spellings; junk cannot grow it
            _MEDIA_CACHE.clear()
        _MEDIA_CACHE[header] = mt
    return mt


_MEDIA_CACHE: dict[str | bytes, str] = {}


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
    """The answer's codec by ``Accept`` with its q-values (RFC 9110 12.5.1): the supported type with the
    highest weight, the more specific range deciding; among equal weights msgpack if ``Accept`` names
    it, else the request's own codec (msgpack for a msgpack request, otherwise JSON). An ``Accept``
    naming neither is not an error: the caller still gets an answer in the request's codec."""
    mirror = MSGPACK if media_type(request_type) in _MSGPACK_TYPES else JSON
    if not accept:
        return mirror
    if isinstance(accept, str):
        accept = accept.encode("latin-1", "replace")
    weights = _ACCEPT_CACHE.get(accept)
    if weights is None:
        weights = _accept_weights(accept)
        if len(_ACCEPT_CACHE) >= 1024:
            _ACCEPT_CACHE.clear()
        _ACCEPT_CACHE[accept] = weights
    w_json, w_msgpack, msgpack_named = weights
    if w_json > w_msgpack:
        return JSON
    if w_msgpack > w_json or msgpack_named:
        return MSGPACK
    return mirror


_ACCEPT_CACHE: dict[bytes, tuple[float, float, bool]] = {}
_UNNAMED = 0.0005        # a type no range names: acceptable only as a fallback


def _accept_weights(accept: bytes) -> tuple[float, float, bool]:
    """(weight of JSON, weight of msgpack, msgpack named with q > 0) under an Accept header. The most
    specific matching range gives a type its weight; q=0 refuses the type (-1)."""
    best = {JSON: (-1, -1.0), MSGPACK: (-1, -1.0)}      # type -> (specificity, q)
    for part in accept.decode("latin-1").lower().split(","):
        rng, *params = (p.strip() for p in part.split(";"))
        if not rng:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        for media, names in ((JSON, _JSON_TYPES), (MSGPACK, _MSGPACK_TYPES)):
            if rng in names:
                spec = 2
            elif rng == media.split("/")[0] + "/*" or (rng == "text/*" and media == JSON):
                spec = 1
            elif rng == "*/*":
                spec = 0
            else:
                continue
            if spec > best[media][0]:
                best[media] = (spec, q)
    w = {m: (_UNNAMED if spec < 0 else q if q > 0 else -1.0) for m, (spec, q) in best.items()}
    return w[JSON], w[MSGPACK], best[MSGPACK][0] == 2 and best[MSGPACK][1] > 0


def encode(obj: object, media: str) -> bytes:
    if media == MSGPACK:
        return msgpack.packb(obj, use_bin_type=True)
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
