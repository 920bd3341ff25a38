"""The ingest's replay buffer after a log reset (``streaming.log_guard``), against a real Valkey: for a while
after a reset a kept event is forgotten only once the processor applied its id; watermarks only decide when an
unapplied one is appended again. The soak lost events under load when the buffer was trimmed with a watermark
of another log (the old one, or a broker that restarted without the topic and took appends before the topic was
created again), and the processor then resumed past them."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis.asyncio as aioredis

from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.shared.contracts.event_records import encode_event, event_key
from strata.shared.online_store.client import connect_required
from strata.streaming import log_guard as lg
from strata.streaming.log_guard import LogGuard

pytestmark = pytest.mark.integration
TOPIC = "events"


def _records(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(event_key("t1", "s1"), encode_event({"event_id": f"{prefix}{i}", "tenant": "t1", "session_id": "s1",
                                                    "type": "view", "item_id": "SKU-1", "ts": 0}))
            for i in range(n)]


class _Log:
    """What the guard appends again (the broker's answer is not needed here)."""

    def __init__(self) -> None:
        self.appended: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, records: list) -> None:
        self.appended += records


def _ids(records) -> list[str]:
    return [orjson.loads(r[-1])["event_id"] for r in records]


async def _setup(url: str) -> tuple[LogGuard, _Log, aioredis.Redis]:
    cfg = load_settings(streaming={"topics": {"partitions": 2}, "store": url}).streaming
    log = _Log()
    g = LogGuard(cfg, None, log)
    g.topic_id = "A"
    r = connect_required(url, 2.0)         # a single node or a cluster, as the guard itself opens it
    await r.hset(K.LOG_IDS_KEY, TOPIC, "A")
    return g, log, r


async def _applied(g: LogGuard, r: aioredis.Redis, *ids: str) -> None:
    bucket = int(time.time() * 1000) // g.dedup_ms
    await r.sadd(K.seen_bucket_key(bucket), *[K.seen_member("t1", i) for i in ids])


async def _rounds(g: LogGuard, r: aioredis.Redis, n: int) -> None:
    for _ in range(n):
        await g._trim(r)
    if g._replaying is not None:
        await g._replaying


def test_without_a_reset_the_watermarks_trim(fresh_valkey) -> None:
    async def go() -> None:
        g, _, r = await _setup(fresh_valkey.url)
        g.acked(0, 0, _records("a", 4))
        g.acked(0, 4, _records("b", 3))
        g.acked(0, 7, _records("c", 3))
        await r.hset(K.WATERMARK_KEY, f"{TOPIC}:0", 6)      # batches are forgotten whole
        await g._trim(r)
        assert len(g.buffer) == 3
        await r.hset(K.LOG_IDS_KEY, TOPIC, "B")      # watermarks of another log: never used
        await r.hset(K.WATERMARK_KEY, f"{TOPIC}:0", 9)
        await g._trim(r)
        assert len(g.buffer) == 3
        await r.aclose()
    asyncio.run(go())


def test_after_a_reset_a_watermark_of_another_log_forgets_nothing_unapplied(fresh_valkey) -> None:
    async def go() -> None:
        g, log, r = await _setup(fresh_valkey.url)
        g.acked(0, 0, _records("old", 200))
        new = _records("new", 160)
        for lo in range(0, 160, 10):                  # offsets start again: a reset; the 200 are appended again
            g.acked(0, lo, new[lo:lo + 10])
        if g._replaying is not None:
            await g._replaying
        assert len(log.appended) == 200
        log.appended.clear()
        # the store still holds a watermark of the lost log (150: within what the new log acknowledged, which is
        # what let the soak's buffer be trimmed), and the processor applied only new0..new49 so far
        await r.hset(K.WATERMARK_KEY, f"{TOPIC}:0", 150)
        await _applied(g, r, *[f"new{i}" for i in range(50)])
        await _rounds(g, r, 1)
        assert len(g.buffer) == 110 and not log.appended          # applied ones forgotten, the rest kept
        await _rounds(g, r, lg.VERIFY_ROUNDS - 1)                 # still unapplied below the watermark
        assert _ids(log.appended) == [f"new{i}" for i in range(50, 151)]   # appended again
        assert len(g.buffer) == 9                                 # new151..new159: not passed yet
        await _applied(g, r, *[f"new{i}" for i in range(50, 160)])
        await _rounds(g, r, 1)
        assert len(g.buffer) == 0
        await r.aclose()
    asyncio.run(go())


def test_an_event_never_applied_is_given_up_loudly(fresh_valkey, caplog) -> None:
    async def go() -> None:
        g, log, r = await _setup(fresh_valkey.url)
        g.acked(0, 5, _records("x", 1))
        g.acked(0, 0, _records("y", 1))              # reset
        await r.hset(K.WATERMARK_KEY, f"{TOPIC}:0", 3)
        seen_offsets = 0
        for _ in range(lg.MAX_REAPPENDS + 1):
            log.appended.clear()
            await _rounds(g, r, lg.VERIFY_ROUNDS)
            if log.appended:                          # the log acknowledges it again, below the watermark
                g.acked(0, seen_offsets, [tuple(log.appended[0][1:])])
                seen_offsets += 1
        assert g._reappended == {} and len(g.buffer) == 0
        await r.aclose()
    with caplog.at_level("ERROR", logger="strata.streaming.log_guard"):
        asyncio.run(go())
    assert any("never applied" in m for m in caplog.messages)
