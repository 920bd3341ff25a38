"""Answers as pre-encoded bytes (what ``shared.serving.encode`` renders, and what the edge caches).

An answer keeps only bytes (JSON prefix and msgpack key/value pairs), so a cache of tens of
thousands of answers adds almost nothing for the garbage collector to walk, and a hit costs a few
byte concatenations instead of re-encoding the items. Per response only ``degraded``, the ids and the
timing are spliced in.
"""

from __future__ import annotations

import itertools
import os

import msgpack
import orjson

from strata.shared.serving.codecs import MSGPACK

_DYNAMIC_FIELDS = 4     # degraded, request_id, impression_id, timing


class Answer:
    """Encoded in the codec of the request that filled it; the other codec is derived on first use."""

    __slots__ = ("_json", "_mp", "_n_static", "degraded", "shown", "signing")

    _json: bytes | None             # the static fields as JSON without the closing brace (or not derived yet)
    _mp: bytes | None               # ... as msgpack key/value pairs without the map header; one of the two is set
    _n_static: int
    degraded: bool
    shown: tuple | None             # what the impression log needs (``shared.serving.impression_log.shown``)
    signing: tuple[bytes, str, bytes] | None    # what each serving's signed id is made of (``ImpressionSigner.prepare``)

    def __init__(self, static: dict, degraded: bool, media: str = "application/json",
                 shown: tuple | None = None) -> None:
        self._n_static = len(static)
        if self._n_static + _DYNAMIC_FIELDS > 15:
            raise ValueError("answer has more fields than a msgpack fixmap holds")
        self._json = None
        self._mp = None
        if media == MSGPACK:
            self._mp = msgpack.packb(static, use_bin_type=True)[1:]     # key/value pairs, no header
        else:
            self._json = orjson.dumps(static)[:-1]                       # without the closing brace
        self.degraded = degraded
        self.shown = shown
        self.signing = None

    def _json_prefix(self) -> bytes:
        if self._json is None:
            assert self._mp is not None     # the codec the answer was filled in
            static = msgpack.unpackb(bytes((0x80 | self._n_static,)) + self._mp)
            self._json = orjson.dumps(static)[:-1]
        return self._json

    def _mp_pairs(self) -> bytes:
        if self._mp is None:
            assert self._json is not None   # the codec the answer was filled in
            self._mp = msgpack.packb(orjson.loads(self._json + b"}"), use_bin_type=True)[1:]
        return self._mp

    def render(self, media: str, degraded: bool, request_id: str, impression_id: str,
               server_us: int, cache: str) -> bytes:
        if media == MSGPACK:
            dyn = msgpack.packb({"degraded": degraded, "request_id": request_id, "impression_id": impression_id,
                                 "timing": {"server_us": server_us, "cache": cache}})[1:]
            return bytes((0x80 | (self._n_static + _DYNAMIC_FIELDS),)) + self._mp_pairs() + dyn
        return b"".join((self._json_prefix(), b',"degraded":', b"true" if degraded else b"false",
                         b',"request_id":"', request_id.encode(), b'","impression_id":"', impression_id.encode(),
                         b'","timing":{"server_us":', str(server_us).encode(), b',"cache":"', cache.encode(),
                         b'"}}'))


class RequestIds:
    """Request and impression ids: a random per-process prefix and a counter (unique, cheap)."""

    __slots__ = ("_prefix", "_seq")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._seq = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._seq):x}"
