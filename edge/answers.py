"""Cached answers as pre-encoded bytes.

A cached answer keeps only bytes (JSON prefix and msgpack key/value pairs), so a cache of tens of
thousands of answers adds almost nothing for the garbage collector to walk, and a hit costs a few
byte concatenations instead of re-encoding the items. Per response only ``degraded``, the ids and the
timing are spliced in.
"""

from __future__ import annotations

import msgpack
import orjson

from shared.codecs import MSGPACK

_DYNAMIC_FIELDS = 4     # degraded, request_id, impression_id, timing


class Answer:
    __slots__ = ("json_prefix", "mp_pairs", "mp_header", "degraded")

    def __init__(self, static: dict, degraded: bool) -> None:
        n = len(static) + _DYNAMIC_FIELDS
        if n > 15:
            raise ValueError("answer has more fields than a msgpack fixmap holds")
        self.json_prefix = orjson.dumps(static)[:-1]        # without the closing brace
        self.mp_pairs = msgpack.packb(static, use_bin_type=True)[1:]   # without the fixmap header
        self.mp_header = bytes((0x80 | n,))
        self.degraded = degraded

    def render(self, media: str, degraded: bool, request_id: str, impression_id: str,
               server_us: int, cache: str) -> bytes:
        if media == MSGPACK:
            dyn = msgpack.packb({"degraded": degraded, "request_id": request_id, "impression_id": impression_id,
                                 "timing": {"server_us": server_us, "cache": cache}})[1:]
            return self.mp_header + self.mp_pairs + dyn
        return b"".join((self.json_prefix, b',"degraded":', b"true" if degraded else b"false",
                         b',"request_id":"', request_id.encode(), b'","impression_id":"', impression_id.encode(),
                         b'","timing":{"server_us":', str(server_us).encode(), b',"cache":"', cache.encode(),
                         b'"}}'))
