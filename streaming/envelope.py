"""Splitting a ``POST /v1/events`` body into its events' bytes before decoding any of them.

A body is one event or ``{"events": [...]}``. ``split`` finds where each event starts and ends (JSON: a
structural scan, in C when the kernel is built; msgpack: the array header, then ``Unpacker.skip``), so:
- the event limit is checked before anything is decoded (a 4 MiB body of empty objects costs a scan, not
  millions of Python objects);
- each event is decoded on its own with limits (``decode_one``): one bad event (bytes map keys, deep nesting,
  a 4 MB string) is rejected at its index and the others are accepted;
- the dead-letter record of a bad event keeps the event's own bytes (``dead_letter.record``).
A JSON batch within the limits is then decoded in one call (the common case, as cheap as before).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgpack
import orjson

from strata.shared.errors import InvalidField, MalformedBody, PayloadTooLarge, UnsupportedMediaType
from strata.shared.serving.codecs import JSON, MSGPACK, media_type

try:
    from strata.streaming._jsonspans import spans as _c_spans
except ImportError:      # no C compiler at install time: the same scan in Python (slower)
    _c_spans = None

_MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
_JSON_TYPES = frozenset({"application/json", "text/json"})
_BATCH_HEAD = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"events"[ \t\r\n]*:[ \t\r\n]*')
_WS = b" \t\r\n"
# per-event msgpack limits: no valid event has a longer array (items: 100), more fields, a longer string
_MSGPACK_LIMITS = {"max_array_len": 100, "max_map_len": 32, "max_str_len": 4096, "max_bin_len": 0,
                   "max_ext_len": 0}
_FIRST = {ord("{"): "dict", ord("["): "list", ord('"'): "str", ord("t"): "bool", ord("f"): "bool",
          ord("n"): "NoneType"}


@dataclass(slots=True)
class Split:
    codec: str                     # JSON or MSGPACK
    body: bytes
    count: int                     # events
    batch: bool                    # {"events": [...]} (else one event)
    decoded: list | None = None    # every event decoded already (a JSON batch with no oversized event)
    spans: list[tuple[int, int]] | None = None     # each event's byte range (found when first needed)
    array_at: int = 0              # where the events array starts (JSON), to find the spans later

    def raw(self, i: int) -> memoryview:
        """Event ``i``'s bytes."""
        if self.spans is None:
            self.spans = _scan(self.body, self.array_at, self.count, True)[0]
        s, e = self.spans[i]
        return memoryview(self.body)[s:e]


def codec_of(content_type: bytes | str | None) -> str:
    mt = media_type(content_type)
    if mt in _JSON_TYPES or mt == "":
        return JSON
    if mt in _MSGPACK_TYPES:
        return MSGPACK
    raise UnsupportedMediaType(f"Content-Type '{mt}' is not supported; use {JSON} or {MSGPACK}",
                               field="Content-Type")


def split(body: bytes, content_type: bytes | str | None, max_events: int, max_event_bytes: int = 0) -> Split:
    """The body's events, located. Raises MalformedBody / InvalidField / PayloadTooLarge for the envelope.

    A JSON batch whose events are all within ``max_event_bytes`` is decoded in one call (``decoded``): the same
    work as event by event, once the limits are known to hold; if it does not decode, each event is decoded on
    its own later (so the bad one is rejected at its index)."""
    codec = codec_of(content_type)
    if codec == MSGPACK:
        spans, batch = _split_msgpack(body, max_events)
        return Split(codec, body, len(spans), batch, spans=spans)
    m = _BATCH_HEAD.match(body)
    if m is None:
        first = body.lstrip(_WS)[:1]
        if first != b"{":
            _malformed_json(body)
            kind = _FIRST.get(first[0], "a number") if first else "nothing"
            raise MalformedBody(f"body must be an event object or {{\"events\": [...]}}, got {kind}", field="body")
        return Split(codec, body, 1, False, spans=[(0, len(body))])     # one event, decoded on its own
    pos = m.end()
    if pos >= len(body) or body[pos] != 0x5B:       # "["
        first = body[pos:pos + 1]
        kind = _FIRST.get(first[0], "a number") if first else "nothing"
        raise InvalidField(f"must be a list of events, got {kind}", field="events")
    count, end, longest = _scan(body, pos, max_events, False)
    if count is None:               # the scan stopped at the first event past the limit
        raise PayloadTooLarge(f"at most {max_events} events per request, got at least {end}", field="events")
    rest = body[end:].strip(_WS)
    if rest != b"}":
        if rest.startswith(b","):
            raise InvalidField("a batch has only 'events'; unknown field(s) after it", field="body")
        raise MalformedBody("body is not valid JSON: expected '}' after the events", field="body")
    if not count:
        raise InvalidField("must hold at least one event", field="events")
    out = Split(codec, body, count, True, array_at=pos)
    if max_event_bytes and longest <= max_event_bytes:
        try:
            evs = orjson.loads(body)["events"]
        except orjson.JSONDecodeError:
            evs = None
        if type(evs) is list and len(evs) == count:
            out.decoded = evs
    return out


def _scan(body: bytes, pos: int, max_items: int, want: bool) -> tuple:
    try:
        return (_c_spans or _py_spans)(body, pos, max_items, want)
    except ValueError as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from None


def _malformed_json(body: bytes) -> None:
    """Raise the decoder's own message for a body that is not JSON at all (small bodies only reach here)."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from None


def _split_msgpack(body: bytes, max_events: int) -> tuple[list[tuple[int, int]], bool]:
    if not body:
        raise MalformedBody("body is not valid msgpack: empty body", field="body")
    head = body[0]
    if not (0x80 <= head <= 0x8F or head in (0xDE, 0xDF)):
        raise MalformedBody("body must be an event object or {\"events\": [...]}", field="body")
    u = msgpack.Unpacker(raw=False, max_buffer_size=max(len(body), 1), **_MSGPACK_LIMITS)
    u.feed(body)
    try:
        n = u.read_map_header()
        key = u.unpack() if n == 1 else None
        if key != "events":
            return [(0, len(body))], False
        at = body[u.tell()]
        if not (0x90 <= at <= 0x9F or at in (0xDC, 0xDD)):
            raise InvalidField("must be a list of events", field="events")
        count = u.read_array_header()
        if count > max_events:
            raise PayloadTooLarge(f"at most {max_events} events per request, got {count}", field="events")
        if count == 0:
            raise InvalidField("must hold at least one event", field="events")
        out = []
        for _ in range(count):
            start = u.tell()
            u.skip()
            out.append((start, u.tell()))
        if u.tell() != len(body):
            raise MalformedBody("body is not valid msgpack: extra data after the events", field="body")
    except (msgpack.OutOfData, ValueError, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedBody(f"body is not valid msgpack: {type(exc).__name__}: {exc}", field="body") from None
    return out, True


def decode_one(raw: memoryview, codec: str) -> object:
    """One event's bytes -> its decoded value (raises MalformedBody, naming the event's ``body``)."""
    if codec == JSON:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedBody(f"event is not valid JSON: {exc}", field="body") from None
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, **_MSGPACK_LIMITS)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedBody(f"event is not valid msgpack: {type(exc).__name__}: {str(exc)[:80]}",
                            field="body") from None


_PY_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def _py_spans(body: bytes, pos: int, max_items: int, want: bool = True) -> tuple:
    """``_jsonspans.spans`` in Python (used only without the C kernel): the same answer, slower."""
    out: list[tuple[int, int]] = []
    depth = 0
    seg = pos + 1                      # where the current element's bytes begin (before trimming)
    for m in _PY_TOKEN.finditer(body, pos + 1):
        tok = m.group()
        if tok[:1] == b'"':
            continue
        if tok in (b"{", b"["):
            depth += 1
        elif depth and tok in (b"}", b"]"):
            depth -= 1
        elif not depth:
            if tok == b"}":
                raise ValueError("unbalanced brackets")
            lo, hi = seg, m.start()
            while lo < hi and body[lo] in _WS:
                lo += 1
            while hi > lo and body[hi - 1] in _WS:
                hi -= 1
            if lo == hi:
                if tok == b"]" and not out:
                    return (out if want else 0), m.end(), 0
                raise ValueError("empty array element")
            if len(out) >= max_items:
                return None, len(out) + 1, 0
            out.append((lo, hi))
            if tok == b"]":
                longest = max(e - s for s, e in out)
                return (out if want else len(out)), m.end(), longest
            seg = m.end()
    raise ValueError("unterminated array")
