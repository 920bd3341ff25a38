"""Tier 2's reads of the online store: the session vector (no PoP cache: always the latest write) and
the slot's click/impression counts for the request's candidates. Each read has a hard budget; a
failure raises ``StoreUnavailable`` (the stages fall back and say degraded)."""

from __future__ import annotations

import asyncio

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from strata.shared import keys as K
from strata.shared.errors import StoreUnavailable
from strata.shared.ranking.session_update import SessionState, decode_session


class Tier2Store:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.r = aioredis.from_url(url.replace("valkey://", "redis://", 1), retry=Retry(NoBackoff(), 0),
                                   socket_timeout=max(timeout_s, 0.05), socket_connect_timeout=max(timeout_s, 0.05))

    async def _call(self, what: str, coro):
        try:
            async with asyncio.timeout(self.timeout_s):
                return await coro
        except Exception as exc:
            raise StoreUnavailable(f"{what} failed: {type(exc).__name__}: {exc}", field="store") from exc

    async def session(self, tenant: str, session_id: str) -> SessionState:
        raw = await self._call("session read", self.r.hmget(K.session_key(tenant, session_id), "vec", "updated_ms"))
        return decode_session(raw[0], raw[1])

    async def counts(self, tenant: str, slot: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(clicks, impressions) per id; missing or malformed fields count 0."""
        fields = [K.clicks_field(i) for i in ids] + [K.imps_field(i) for i in ids]
        raw = await self._call("bandit counts read", self.r.hmget(K.bandit_key(tenant, slot), fields))
        vals = np.zeros(len(raw), dtype=np.float64)
        for i, v in enumerate(raw):
            if v is not None:
                try:
                    f = float(v)
                except ValueError:
                    continue
                if 0.0 <= f < float("inf"):        # NaN, negatives and inf count 0
                    vals[i] = f
        n = len(ids)
        return vals[:n], vals[n:]

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(max(self.timeout_s, 0.25)):
                return bool(await self.r.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self.r.aclose()
