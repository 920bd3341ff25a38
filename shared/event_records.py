"""How an event travels on the log: its partitioning key and its msgpack value.

One definition for every producer (the ingest API, the edge's impression log) and the processor that
reads them back, so one session's events always land on one partition, in order.
"""

from __future__ import annotations

import msgpack


def event_key(tenant: str, session_id: str) -> bytes:
    """The partitioning key: one session's events stay in order on one partition."""
    return f"{tenant}\x1f{session_id}".encode()


def encode_event(event: dict) -> bytes:
    return msgpack.packb(event, use_bin_type=True)


def decode_event(value: bytes) -> object:
    return msgpack.unpackb(value, raw=False, strict_map_key=False)
