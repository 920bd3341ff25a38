"""Keep the live model's bandit counts fresh: one pipelined read of every tracked slot per period.

Parsing is vectorised (``shared.online_store.codecs.parse_counts``) and the loop yields to the event loop
between slots, so a refresh never holds requests up for long. While the store is marked down the
loop skips it (``StoreHealth`` probes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from strata.edge.model_slot import ModelSlot
from strata.edge.session_client import SessionStore, StoreHealth
from strata.shared.errors import StoreUnavailable
from strata.shared.online_store.codecs import parse_counts

logger = logging.getLogger(__name__)


class BanditRefresher:
    def __init__(self, slot: ModelSlot, store: SessionStore, health: StoreHealth,
                 on_refresh: Callable[[int, int, float], None] = lambda slots, fields, seconds: None) -> None:
        self.slot = slot
        self.store = store
        self.health = health
        self.on_refresh = on_refresh      # (slots read, fields parsed, seconds), for metrics

    async def refresh_once(self) -> int:
        """Read and install the counts of every tracked slot; returns how many slots were read."""
        live = self.slot.current
        if live is None:
            return 0
        counts = live.counts
        keys = counts.tracked()
        if not keys:
            return 0
        t0 = time.perf_counter()
        raws = await self.store.get_bandit_counts_many(keys)
        fields = 0
        for (tenant, slot), raw in zip(keys, raws, strict=True):
            counts.set(tenant, slot, parse_counts(raw, live.ranker.index, counts.n_items))
            fields += len(raw)
            await asyncio.sleep(0)
        self.on_refresh(len(keys), fields, time.perf_counter() - t0)
        return len(keys)

    async def run(self, period_s: float) -> None:
        if not self.store.configured:
            return
        while True:
            await asyncio.sleep(period_s)
            if not self.health.up:          # the health prober decides when it is back
                continue
            try:
                await self.refresh_once()
                self.health.succeeded()
            except StoreUnavailable as exc:
                self.health.failed(exc)
            except Exception:  # never let the refresher die
                logger.exception("bandit refresh failed")
