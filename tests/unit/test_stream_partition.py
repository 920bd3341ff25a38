"""The ingest's batched produce puts every keyed event where Kafka's default partitioner would (a session's
events stay on one partition, in order), with the compiled murmur2 or its pure-Python fallback."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from strata.shared.contracts.event_records import event_key
from strata.streaming import log


def _keys() -> list[bytes]:
    rng = random.Random(11)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))) for _ in range(5000)]
    return keys + [event_key("default", f"s{i}") for i in range(1000)] + [b"", b"a", b"ab", b"abc", b"abcd"]


def test_partition_matches_aiokafkas_default_partitioner() -> None:
    for n in (1, 2, 4, 7, 64):
        parts = list(range(n))
        for k in _keys():
            assert log.partition(k, n) == DefaultPartitioner()(k, parts, parts), (k, n)


def test_compiled_murmur2_equals_the_reference() -> None:
    compiled = pytest.importorskip("strata.streaming._murmur2", reason="C kernel not built (no compiler at install)")
    for k in _keys():
        assert compiled.murmur2(k) == murmur2(k), k
    with pytest.raises(ValueError):
        compiled.partition(b"x", 0)


def test_invalidation_message_names_every_session_once_and_ignores_junk() -> None:
    import msgpack

    from strata.edge.invalidation import InvalidationListener

    got = []
    lis = InvalidationListener("redis://127.0.0.1:1/0", lambda t, s: got.append((t, s)))
    lis.handle(msgpack.packb([["default", "s1"], ["t\x1fx", "s\x1f2"]]))
    assert got == [("default", "s1"), ("t\x1fx", "s\x1f2")] and lis.received == 2
    lis.handle(b"\xc1not msgpack")
    lis.handle(msgpack.packb({"a": 1}))
    lis.handle(msgpack.packb([["only-one"], [1, 2]]))
    assert lis.received == 2 and lis.errors == 4
