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
from collections import OrderedDict
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


class _Entry(NamedTuple):
    at: float          # monotonic time of the read
    value: tuple       # the user's part or the session's part of a Profile
    size: int          # estimated bytes


class _BoundedCache:
    """An LRU bounded by estimated bytes (keys are chosen by callers: entries, not the count, are what grows)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[tuple, _Entry] = OrderedDict()

    def get(self, key: tuple) -> _Entry | None:
        e = self._d.get(key)
        if e is not None:
            self._d.move_to_end(key)
        return e

    def put(self, key: tuple, value: tuple, size: int) -> None:
        old = self._d.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        if size > self.max_bytes:
            return
        self._d[key] = _Entry(time.monotonic(), value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, gone = self._d.popitem(last=False)
            self.bytes -= gone.size

    def drop(self, match) -> int:
        """Remove every entry whose key ``match(key)`` accepts; how many."""
        keys = [k for k in self._d if match(k)]
        for k in keys:
            self.bytes -= self._d.pop(k).size
        return len(keys)

    def __len__(self) -> int:
        return len(self._d)


def _user_size(p: Profile) -> int:
    return 400 + 48 * len(p.recent_categories) + 200 * len(p.purchases) + 48 * len(p.preferences)


def _session_size(p: Profile) -> int:
    return 300 + (p.vec.nbytes if p.vec is not None else 0) + 80 * len(p.recent)


class ProfileSource:
    """The store behind a deadline, with the last good profile as fallback: its user part (categories,
    purchases, tastes) kept once per (tenant, user), its session part (vector, recent items) per (tenant, user,
    session), each in an LRU bounded by estimated bytes. (One cached Profile per session would hold a copy of the
    user's purchases per session id: 113 KB each for a 500-purchase user, enough to exhaust memory from one client.)
    """

    def __init__(self, store: ProfileStore, timeout_s: float, max_stale_s: float = 3600.0,
                 max_bytes: int = 64 << 20) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.max_stale_s = max_stale_s
        self.failures = 0
        self.retries = 0
        self._users = _BoundedCache(max_bytes // 2)
        self._sessions = _BoundedCache(max_bytes // 2)

    async def get(self, tenant: str, user_id: str, session_id: str) -> Profile:
        if not self.store.configured:
            return EMPTY
        try:
            async with asyncio.timeout(self.timeout_s):
                profile = await self._read_with_retry(tenant, user_id, session_id)
        except (StoreUnavailable, TimeoutError) as exc:
            self.failures += 1
            logger.warning("profile read failed, serving cached or none: %s", exc or type(exc).__name__)
            return self._cached(tenant, user_id, session_id)
        self._users.put((tenant, user_id), (profile.recent_categories, profile.purchased, profile.preferences,
                                            profile.purchases), _user_size(profile))
        self._sessions.put((tenant, user_id, session_id), (profile.vec, profile.recent), _session_size(profile))
        return profile

    def _cached(self, tenant: str, user_id: str, session_id: str) -> Profile:
        user = self._users.get((tenant, user_id))
        now = time.monotonic()
        if user is None or now - user.at >= self.max_stale_s:
            return Profile(None, (), True)
        session = self._sessions.get((tenant, user_id, session_id))
        vec, recent = session.value if session is not None and now - session.at < self.max_stale_s else (None, ())
        cats, purchased, prefs, purchases = user.value
        return Profile(vec, cats, True, round(now - user.at, 3), purchased, prefs, purchases, recent)

    def forget_user(self, tenant: str, user_id: str) -> int:
        """Erasure: drop everything cached of the user (its sessions included); how many entries."""
        return self._users.drop(lambda k: k == (tenant, user_id)) + \
            self._sessions.drop(lambda k: k[0] == tenant and k[1] == user_id)

    @property
    def cached_bytes(self) -> int:
        return self._users.bytes + self._sessions.bytes

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
