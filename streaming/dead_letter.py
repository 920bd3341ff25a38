"""Dead-letter records: one JSON object per rejected event, request body, log record or trigger.

Every record is built so that it always serializes and always fits the log, whatever it holds:
``{"source", "code", "field", "reason", "received_ms", "size", "raw", ...}`` where ``size`` is the rejected
bytes' length and ``raw`` is the rejected event as JSON when it re-encodes to at most ``RAW_MAX`` bytes;
otherwise ``raw`` is the first ``RAW_MAX`` bytes (UTF-8 text for JSON input, base64 for binary) with
``"raw_truncated": true`` and ``"raw_encoding"``. Reasons are cut to ``REASON_MAX`` characters. So a record is
at most a few tens of KiB: a rejection is never turned into a 503 by a record the log refuses.
"""

from __future__ import annotations

import base64
import hashlib

import orjson

RAW_MAX = 16 * 1024
REASON_MAX = 300


def record(source: str, code: str, field: str | None, reason: str, received_ms: int, raw_bytes: bytes | memoryview,
           decoded: object = None, size: int | None = None, **extra: object) -> bytes:
    """A dead-letter record value. ``raw_bytes`` are the rejected bytes (or their first part, when ``size``, the
    whole length, is larger); ``decoded`` their decoded value, if any."""
    raw_bytes = bytes(raw_bytes[:RAW_MAX + 1]) if size is not None else bytes(raw_bytes)
    whole = len(raw_bytes) if size is None else size
    out: dict = {"source": source, "code": code, "field": field, "reason": reason[:REASON_MAX],
                 "received_ms": received_ms, "size": whole, **extra}
    if decoded is not None and whole <= RAW_MAX:
        try:
            out["raw"] = orjson.loads(orjson.dumps(decoded))     # bytes keys, depth > 254: TypeError below
            return orjson.dumps(out)
        except (TypeError, orjson.JSONEncodeError, orjson.JSONDecodeError):
            pass
    head = raw_bytes[:RAW_MAX]
    text = _utf8(head, cut=whole > len(head))
    if text is not None:
        out["raw"], out["raw_encoding"] = text, "utf-8"
    else:
        out["raw"], out["raw_encoding"] = base64.b64encode(head).decode("ascii"), "base64"
    if whole > len(head):
        out["raw_truncated"] = True
        if whole == len(raw_bytes):
            out["raw_sha256"] = hashlib.sha256(raw_bytes).hexdigest()
    return orjson.dumps(out)


def _utf8(head: bytes, cut: bool) -> str | None:
    """``head`` as text if it is UTF-8 (a cut may split the last character: up to 3 bytes are dropped)."""
    for drop in range(4 if cut else 1):
        try:
            return head[:len(head) - drop].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None
