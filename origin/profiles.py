"""What the origin knows of a user: the session vector, the session's recent items (field ``recent`` of the
session hash, read with ``shared.ranking.session_update.recent_items``), recent categories, purchases and stated
tastes, read from the online store.

Recovery rule: when the store read fails or misses its deadline, the last profile read for that
user/session is served if it is younger than ``max_stale_s`` (1 h), and the answer is marked degraded;
otherwise the request goes on without a profile (also degraded). A failed read is retried once (it is
idempotent) only while half the deadline remains. Without consent nothing is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

import numpy as np

from strata.shared.errors import StoreUnavailable
from strata.shared.keys import MAX_PURCHASES, profile_key, purchases_key, session_key
from strata.shared.online_store import codecs
from strata.shared.online_store.client import configured, connect
from strata.shared.ranking.session_update import recent_items

logger = logging.getLogger(__name__)


class Profile(NamedTuple):
    vec: np.ndarray | None            # session vector (EMBED_DIM), same space as the item vectors
    recent_categories: tuple[str, ...]
    degraded: bool = False            # the store could not be read (stale or no profile used)
    stale_s: float | None = None      # age of the cached profile served instead
    purchased: frozenset[str] = frozenset()   # item ids the user bought (the most recent MAX_PURCHASES)
    preferences: tuple[str, ...] = ()         # stated tastes (categories, then brands) from a preference event
    purchases: tuple[tuple[str, int], ...] = ()  # (item id, last purchase ts_ms), most recent first
    recent: tuple[str, ...] = ()              # the session's recent item ids (views, clicks, carts), most recent first


EMPTY = Profile(None, ())


class ProfileStore:
    """Reads the store; ``none`` store: always empty. Errors are ``StoreUnavailable``."""

    configured = False

    async def read(self, tenant: str, user_id: str, session_id: str) -> Profile:
        return EMPTY

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None


class RedisProfileStore(ProfileStore):
    configured = True

    def __init__(self, url: str, timeout_s: float) -> None:
        self._r = connect(url, timeout_s, field="origin.store.url")

    async def read(self, tenant: str, user_id: str, session_id: str) -> Profile:
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hmget(session_key(tenant, session_id), ["vec", "recent"])
                pipe.hgetall(profile_key(tenant, user_id))
                pipe.zrevrange(purchases_key(tenant, user_id), 0, MAX_PURCHASES - 1, withscores=True)
                (vec_raw, recent_raw), prof, bought = await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(f"profile read failed: {type(exc).__name__}: {exc}") from exc
        bought_items = codecs.purchases(bought)
        return Profile(codecs.decode_vector(vec_raw), codecs.profile_categories(prof, f"profile of {tenant}/{user_id}"),
                       purchased=frozenset(i for i, _ in bought_items),
                       preferences=codecs.stated_preferences(prof.get(b"stated")), purchases=bought_items,
                       recent=tuple(recent_items(recent_raw)))

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._r.aclose()


def make_profile_store(url: str, timeout_s: float) -> ProfileStore:
    """The ``none`` store (always empty) or the store at ``url`` (``shared.online_store.client``)."""
    return RedisProfileStore(url, timeout_s) if configured(url) else ProfileStore()


class ProfileSource:
    """The store behind a deadline, with the last good profile per (tenant, user, session) as fallback."""

    def __init__(self, store: ProfileStore, timeout_s: float, max_stale_s: float = 3600.0,
                 max_entries: int = 100_000) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.max_stale_s = max_stale_s
        self.max_entries = max_entries
        self.failures = 0
        self.retries = 0
        self._last: dict[tuple[str, str, str], tuple[float, Profile]] = {}

    async def get(self, tenant: str, user_id: str, session_id: str) -> Profile:
        if not self.store.configured:
            return EMPTY
        key = (tenant, user_id, session_id)
        try:
            async with asyncio.timeout(self.timeout_s):
                profile = await self._read_with_retry(tenant, user_id, session_id)
        except (StoreUnavailable, TimeoutError) as exc:
            self.failures += 1
            logger.warning("profile read failed, serving cached or none: %s", exc or type(exc).__name__)
            cached = self._last.get(key)
            if cached is not None:
                age = time.monotonic() - cached[0]
                if age < self.max_stale_s:
                    return cached[1]._replace(degraded=True, stale_s=round(age, 3))
            return Profile(None, (), True)
        if len(self._last) >= self.max_entries:
            self._last.pop(next(iter(self._last)))
        self._last[key] = (time.monotonic(), profile)
        return profile

    async def _read_with_retry(self, tenant: str, user_id: str, session_id: str) -> Profile:
        """The read is idempotent: one retry after a short backoff, only while half the deadline remains
        (the surrounding timeout still bounds both attempts)."""
        start = time.monotonic()
        try:
            return await self.store.read(tenant, user_id, session_id)
        except StoreUnavailable:
            backoff = min(0.005, self.timeout_s / 10)
            if time.monotonic() - start + backoff > self.timeout_s / 2:
                raise
            self.retries += 1
            await asyncio.sleep(backoff)
            return await self.store.read(tenant, user_id, session_id)
