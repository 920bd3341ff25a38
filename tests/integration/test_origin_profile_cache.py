"""The origin's fallback profile cache is bounded by bytes and keeps a user's part once (the review's finding 7,
probe ``c4_memory_growth.py``: one user with 500 purchases asked for under 5,000 session ids held 113 KB per
session, ~11 GB at the 100k-entry cap). Real valkey-server, the origin's own store reader."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

from strata.origin.profiles import ProfileSource, RedisProfileStore
from strata.shared import keys as K

SESSIONS = 2_000


def test_sessions_of_one_big_buyer_do_not_copy_the_user(fresh_valkey, store_redis) -> None:
    now = int(time.time() * 1000)
    store_redis.zadd(K.purchases_key("default", "buyer"), {f"SKU-{i:06d}": now - i for i in range(500)})

    async def go() -> tuple[int, int, ProfileSource]:
        store = RedisProfileStore(fresh_valkey.url, 1.0)
        source = ProfileSource(store, 1.0)
        try:
            await source.get("default", "buyer", "warm")           # the user's part, cached once
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(SESSIONS):
                p = await source.get("default", "buyer", f"s-{i}")
                assert len(p.purchases) == 500
            grown = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            return grown, source.cached_bytes, source
        finally:
            await store.close()

    grown, cached, source = asyncio.run(go())
    assert grown / SESSIONS < 4_000, f"{grown / SESSIONS:.0f} bytes retained per session"
    assert cached < 64 << 20
    # the fallback still has the user's purchases for any of those sessions, and erasure forgets all of it
    assert len(source._cached("default", "buyer", "s-7").purchases) == 500
    assert source.forget_user("default", "buyer") == SESSIONS + 2
    assert source._cached("default", "buyer", "s-7").purchases == ()


def test_the_cache_stays_within_its_byte_budget(fresh_valkey, store_redis) -> None:
    now = int(time.time() * 1000)
    for u in range(40):
        store_redis.zadd(K.purchases_key("default", f"u{u}"), {f"SKU-{i:06d}": now - i for i in range(500)})

    async def go() -> ProfileSource:
        store = RedisProfileStore(fresh_valkey.url, 1.0)
        source = ProfileSource(store, 1.0, max_bytes=2 << 20)
        try:
            for u in range(40):
                await source.get("default", f"u{u}", "s")
        finally:
            await store.close()
        return source

    source = asyncio.run(go())
    assert source.cached_bytes <= 2 << 20 and len(source._users) < 40
