"""Request ids and W3C trace context across tiers: ``X-Request-ID`` and ``traceparent`` in, forwarded out.

A front door reads the two headers (``from_headers``) and sets ``TRACE`` (a context variable, the way
OpenTelemetry carries its context) for the request's duration, so whatever calls another service while
answering it (the router's upstream client, the origin's reasoner client) forwards them with
``outgoing``: the same request id and trace id, and a new parent (span) id for the hop. Each tier logs
the request id and the traceparent of the requests it answered for another tier, so one request id is
found in every tier's JSON log.
"""

from __future__ import annotations

from contextvars import ContextVar
from random import getrandbits
from typing import NamedTuple

MAX_REQUEST_ID = 128
_HEX = frozenset(b"0123456789abcdef")


class Trace(NamedTuple):
    request_id: str | None      # the caller's X-Request-ID (None: it sent none)
    traceparent: str | None     # the caller's W3C traceparent, when valid (None: none or malformed)


TRACE: ContextVar[Trace | None] = ContextVar("strata_trace", default=None)


def _valid_request_id(value: bytes) -> str | None:
    """Printable ASCII, 1..128 characters (anything else is dropped: it goes into logs and other requests)."""
    if not value or len(value) > MAX_REQUEST_ID or not value.isascii():
        return None
    text = value.decode("ascii")
    return text if text.isprintable() and " " not in text else None


def valid_traceparent(value: bytes | str | None) -> str | None:
    """``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`` with non-zero ids, lower-case (W3C Trace
    Context); None for anything else (the receiver then starts a new trace)."""
    if value is None:
        return None
    raw = value.encode("latin-1") if isinstance(value, str) else value
    raw = raw.strip()
    if len(raw) < 55 or raw[2:3] != b"-" or raw[35:36] != b"-" or raw[52:53] != b"-":
        return None
    version, trace_id, parent, flags = raw[:2], raw[3:35], raw[36:52], raw[53:55]
    if version == b"ff" or (version == b"00" and len(raw) != 55):
        return None
    if not all(c in _HEX for c in raw[:2] + trace_id + parent + flags):
        return None
    if trace_id == b"0" * 32 or parent == b"0" * 16:
        return None
    return raw[:55].decode("ascii")


def from_headers(request_id: bytes | None, traceparent: bytes | None) -> Trace | None:
    """The trace context a request brought (None when it brought neither header)."""
    if request_id is None and traceparent is None:
        return None
    return Trace(None if request_id is None else _valid_request_id(request_id.strip()),
                 valid_traceparent(traceparent))


def scope_trace(scope: dict) -> Trace | None:
    """``from_headers`` on an ASGI scope."""
    rid = tp = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            rid = value
        elif name == b"traceparent":
            tp = value
    return from_headers(rid, tp)


def child_traceparent(parent: str | None) -> str:
    """The traceparent of a call made while serving ``parent``: its trace id (a new one when there is none)
    and a new parent id, sampled flag kept. Ids come from ``random`` (seeded from the OS, reseeded in a forked
    child), as OpenTelemetry's ``RandomIdGenerator`` makes them: they must be unique, not secret, and
    ``os.urandom`` is a system call each (two per escalated request)."""
    span = getrandbits(64) or 1                 # all-zero ids are invalid
    if parent is None:
        return f"00-{getrandbits(128) or 1:032x}-{span:016x}-01"
    return f"{parent[:35]}-{span:016x}-{parent[53:55]}"


def outgoing(request_id: str | None = None) -> dict[str, str]:
    """Headers for a call to another service made while answering the current request: ``X-Request-ID``
    (``request_id``, else the caller's) and a child ``traceparent``. Empty when there is nothing to forward."""
    trace = TRACE.get()
    rid = request_id or (trace.request_id if trace is not None else None)
    if rid is None and trace is None:
        return {}
    headers = {"traceparent": child_traceparent(trace.traceparent if trace is not None else None)}
    if rid is not None:
        headers["x-request-id"] = rid
    return headers
