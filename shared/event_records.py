"""How an event travels on the log: its partitioning key and its msgpack value.

One definition for every producer (the ingest API, the edge's impression log) and the processor that
reads them back, so one session's events always land on one partition, in order.
"""

from __future__ import annotations

import msgpack


def event_key(tenant: str, session_id: str) -> bytes:
    """The partitioning key: one session's events stay in order on one partition."""
    return f"{tenant}\x1f{session_id}".encode()


_PACKER = msgpack.Packer(use_bin_type=True)      # reused: half the cost of packb's new Packer per call (one
                                                 # event loop thread per process packs)


def encode_event(event: dict) -> bytes:
    return _PACKER.pack(event)


def decode_event(value: bytes) -> object:
    return msgpack.unpackb(value, raw=False, strict_map_key=False)
