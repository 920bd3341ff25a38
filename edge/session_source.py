"""Session vectors at the PoP: a local cache in front of the store, read within the request's budget.

Fresh for ``session_ttl_s``; then served stale while one background read revalidates it; never served
older than ``session_max_stale_s`` (then the store must be read again). When the store is down, a
session the PoP does not hold is answered without a vector and the answer says ``degraded``.
"""

from __future__ import annotations

import asyncio
import time

from strata.edge.caches import TTLCache
from strata.edge.session_client import SessionState, SessionStore, StoreHealth, read_with_deadline
from strata.shared.config import CacheSettings
from strata.shared.errors import StoreUnavailable
from strata.shared.ranking.stages.session import DEGRADED, NO_SESSION, Session


def vector_age_s(state: SessionState) -> float | None:
    if state.updated_ms is None:
        return None
    return max(time.time() - state.updated_ms / 1000.0, 0.0)


class PopSessions:
    """The edge's ``shared.ranking.stages.session.SessionSource``: the PoP cache, then the store."""

    def __init__(self, store: SessionStore, health: StoreHealth, cache: TTLCache, cfg: CacheSettings,
                 timeout_s: float) -> None:
        self.store = store
        self.health = health
        self.cache = cache
        self.ttl_s = cfg.session_ttl_s
        self.max_stale_s = cfg.session_max_stale_s
        self.timeout_s = timeout_s
        self.hits = 0
        self.misses = 0
        self._pending: set[tuple[str, str]] = set()

    def cached(self, tenant: str, session_id: str) -> Session | None:
        """The session without awaiting, or None when the store must be read first."""
        if not self.store.configured:
            return NO_SESSION
        key = (tenant, session_id)
        entry = self.cache.get_entry(key)
        up = self.health.up
        if entry is not None:
            age, state = entry
            if age <= self.max_stale_s:
                if age > self.ttl_s and up and key not in self._pending:
                    self._pending.add(key)
                    asyncio.get_running_loop().create_task(self._revalidate(key))
                self.hits += 1
                return Session(state.vec, vector_age_s(state), not up)
        self.misses += 1
        if not up:
            return DEGRADED
        return None

    async def fetch(self, tenant: str, session_id: str) -> Session:
        """Read the session from the store within its deadline; on failure: no vector, degraded."""
        try:
            state = await read_with_deadline(self.store.get_session(tenant, session_id), self.timeout_s)
        except (StoreUnavailable, TimeoutError) as exc:
            self.health.failed(exc)
            return DEGRADED
        self.cache.put((tenant, session_id), state)
        self.health.succeeded()
        return Session(state.vec, vector_age_s(state), False)

    async def _revalidate(self, key: tuple[str, str]) -> None:
        try:
            state = await read_with_deadline(self.store.get_session(*key), max(self.timeout_s, 0.05))
            self.cache.put(key, state)
            self.health.succeeded()
        except (StoreUnavailable, TimeoutError) as exc:
            self.health.failed(exc)
        finally:
            self._pending.discard(key)
