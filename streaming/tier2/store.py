"""Tier 2's reads of the online store: the session vector (no PoP cache: always the latest write) and the
slot's click/impression counts of named items. Each read has a hard budget; a failure raises
``StoreUnavailable`` (the stages fall back and say degraded). Connections and decoding are
``shared.online_store``'s."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from strata.shared import keys as K
from strata.shared.errors import StoreUnavailable
from strata.shared.online_store.client import connect
from strata.shared.online_store.codecs import SessionState, count_fields, decode_session


class Tier2Store:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.r = connect(url, timeout_s, field="streaming.store")

    async def _call(self, what: str, coro):
        try:
            async with asyncio.timeout(self.timeout_s):
                return await coro
        except Exception as exc:
            raise StoreUnavailable(f"{what} failed: {type(exc).__name__}: {exc}", field="store") from exc

    async def session(self, tenant: str, session_id: str) -> SessionState:
        """The session's vector (None: no store configured, or none written yet)."""
        if self.r is None:
            return SessionState(None, None)
        raw = await self._call("session read", self.r.hmget(K.session_key(tenant, session_id), "vec", "updated_ms"))
        return decode_session(raw[0], raw[1])

    async def counts(self, tenant: str, slot: str, ids: Sequence[str]) -> list:
        """The raw ``HMGET`` of every id's clicks, impressions and expected clicks (``count_fields``; ``ItemCounts.add``
        reads it)."""
        if self.r is None:
            return [None] * (2 * len(ids))
        return await self._call("bandit counts read", self.r.hmget(K.bandit_key(tenant, slot), count_fields(ids)))

    async def ping(self) -> bool:
        if self.r is None:
            return False
        try:
            async with asyncio.timeout(max(self.timeout_s, 0.25)):
                return bool(await self.r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        if self.r is not None:
            await self.r.aclose()
