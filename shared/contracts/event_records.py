"""How an event travels on the log: its partitioning key and its value (the event's wire dict as JSON).

One definition for every producer (the ingest API, the edge's impression log) and the processor that
reads them back, so one session's events always land on one partition, in order. Values are JSON (orjson:
about half the instructions of msgpack both ways, on the ingest's and the processor's hot paths); values
written as msgpack by earlier versions are still read (a JSON event starts with ``{``, which no msgpack
map does).
"""

from __future__ import annotations

import msgpack
import orjson


def event_key(tenant: str, session_id: str) -> bytes:
    """The partitioning key: one session's events stay in order on one partition."""
    return f"{tenant}\x1f{session_id}".encode()


def encode_event(event: dict) -> bytes:
    return orjson.dumps(event)


def decode_event(value: bytes) -> object:
    """A record value -> the decoded event (not validated); raises on bytes that are neither JSON nor msgpack."""
    if value and value[0] == 0x7B:         # "{"
        return orjson.loads(value)
    return msgpack.unpackb(value, raw=False, strict_map_key=False)      # msgpack: written by an earlier version
