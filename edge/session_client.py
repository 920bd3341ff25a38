"""SessionStore: the edge's read side of the online store (Redis/Valkey in production and locally).

The store is optional at the edge: when it is down (or configured as ``none``) the edge answers from
its caches and priors with ``degraded=true``. After an error the store is skipped for
``retry_after_s`` (a simple circuit breaker); the background refreshers keep probing and the redis
client reconnects by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

import numpy as np

from shared.errors import StoreUnavailable
from shared.features import EMBED_DIM
from shared.keys import bandit_key, session_key

logger = logging.getLogger(__name__)


class SessionState(NamedTuple):
    """A tuple of untracked objects, so the garbage collector never walks the session cache."""

    vec: np.ndarray | None       # float32 [EMBED_DIM], None if the store has no vector for the session
    updated_ms: int | None


class SessionStore:
    """Interface. ``configured`` is False for the ``none`` store (the edge then never claims freshness)."""

    configured = False

    async def get_session(self, tenant: str, session_id: str) -> SessionState:
        return SessionState(None, None)

    async def get_bandit_counts_many(self, keys: list[tuple[str, str]]) -> list[dict[bytes, bytes]]:
        """The counts hashes of many (tenant, slot) pairs in one round trip."""
        return [{} for _ in keys]

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None


class RedisSessionStore(SessionStore):
    configured = True

    def __init__(self, url: str, timeout_s: float) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # Fail fast: redis-py's default retries take ~4 s to give up on a dead server.
        self._r = aioredis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_timeout=max(timeout_s, 0.05),
            socket_connect_timeout=max(timeout_s, 0.05), health_check_interval=0,
        )

    async def get_session(self, tenant: str, session_id: str) -> SessionState:
        try:
            raw = await self._r.hmget(session_key(tenant, session_id), "vec", "updated_ms")
        except Exception as exc:
            raise StoreUnavailable(f"session read failed: {type(exc).__name__}: {exc}") from exc
        return decode_session(raw[0], raw[1])

    async def get_bandit_counts_many(self, keys: list[tuple[str, str]]) -> list[dict[bytes, bytes]]:
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for tenant, slot in keys:
                    pipe.hgetall(bandit_key(tenant, slot))
                return await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(f"bandit read failed: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._r.aclose()


def decode_session(vec_raw: bytes | None, updated_raw: bytes | None) -> SessionState:
    """Bytes from the store -> SessionState. A vector of the wrong size is ignored (logged once per call)."""
    vec = None
    if vec_raw is not None:
        if len(vec_raw) == EMBED_DIM * 4:
            vec = np.frombuffer(vec_raw, dtype="<f4").astype(np.float32)
            if not np.all(np.isfinite(vec)):
                vec = None
        else:
            logger.warning("session vector has %d bytes, expected %d; ignored", len(vec_raw), EMBED_DIM * 4)
    updated = None
    if updated_raw is not None:
        try:
            updated = int(updated_raw)
        except ValueError:
            updated = None
    return SessionState(vec, updated)


def make_store(url: str, timeout_s: float) -> SessionStore:
    if url.strip().lower() in ("", "none"):
        return SessionStore()
    if not url.startswith(("redis://", "rediss://", "unix://", "valkey://")):
        from shared.errors import ConfigError

        raise ConfigError(f"store URL must be redis://, rediss://, unix:// or 'none', got {url!r}",
                          field="edge.store.url")
    return RedisSessionStore(url.replace("valkey://", "redis://", 1), timeout_s)


class StoreHealth:
    """Circuit breaker state shared by the request path and the background refreshers."""

    __slots__ = ("retry_after_s", "down_until", "errors", "last_error", "slow_reads")
    TRIP_AFTER_TIMEOUTS = 3

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.down_until = 0.0
        self.errors = 0
        self.last_error = ""
        self.slow_reads = 0

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, exc: BaseException) -> None:
        """Connection errors open the breaker at once; deadline misses only after a few in a row."""
        self.errors += 1
        self.last_error = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            self.slow_reads += 1
            if self.slow_reads < self.TRIP_AFTER_TIMEOUTS:
                return
        if self.up:
            logger.warning("store unavailable; serving degraded from caches and priors: %s", exc)
        self.down_until = time.monotonic() + self.retry_after_s

    def recovered(self) -> None:
        if self.down_until:
            logger.info("store reachable again")
        self.down_until = 0.0
        self.slow_reads = 0


async def read_with_deadline(coro, timeout_s: float):
    """Await a store call within the request's store budget."""
    async with asyncio.timeout(timeout_s):
        return await coro
