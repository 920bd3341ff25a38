"""The tier-2 scorer as a service part: builds the model, the store reads, the handler and its metrics.

Started and stopped with the streaming service's lifespan (``streaming.app``); ``readiness`` is ready
once the model is loaded and its item vectors indexed.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from strata.shared.auth.impressions import signer_from_settings
from strata.shared.catalog_feed import CatalogFeed
from strata.shared.catalog_feed import configured as feed_configured
from strata.shared.config import ImpressionSettings, StrataSettings
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.catalog_overlay import CatalogOverlay
from strata.shared.ranking.guardrails import REASONS
from strata.shared.ranking.stages.escalate import Escalate
from strata.shared.ranking.stages.guardrail_filter import GuardrailFilter
from strata.shared.router.router import Router
from strata.shared.serving.answers import Answer, RequestIds
from strata.shared.serving.encode import Encode
from strata.shared.serving.impression_log import ImpressionLog
from strata.shared.serving.metrics import Instruments
from strata.streaming.tier2.handler import TIER, Tier2Handler
from strata.streaming.tier2.model import Tier2Model, load_model
from strata.streaming.tier2.stages import AnnCandidates, Tier2Ctx
from strata.streaming.tier2.store import Tier2Store

logger = logging.getLogger(__name__)


class Tier2Service:
    def __init__(self, settings: StrataSettings) -> None:
        cfg = self.cfg = settings.streaming
        t2 = cfg.tier2
        self.policy = settings.guardrails
        self.model: Tier2Model | None = None
        self.store = Tier2Store(cfg.store, t2.store_timeout_ms / 1000)
        m = self.metrics = Instruments("strata_tier2")
        m.define("requests_total", "answers of POST /v1/recommend by status", ("status",))
        m.define("request_seconds", "server-side latency of POST /v1/recommend")
        m.define("stage_seconds", "latency of each request-path stage (sampled requests)", ("stage",))
        m.define("degraded_total", "answers given with degraded=true (store or index unavailable)")
        m.define("candidates_total", "answers by candidate source", ("source",))
        m.define("guardrail_removed_total", "candidates removed by the guardrails, by reason", ("reason",))
        m.define("ann_failures_total", "ANN searches that failed (popular items stood in)")
        m.define("model_info", "live model version", ("version",))
        self._removed = np.zeros(len(REASONS), dtype=np.int64)
        m.gauge("guardrail_removed_total", lambda: [((REASONS[c],), float(n)) for c, n in
                                                    enumerate(self._removed.tolist()) if c and n], counter=True)
        m.gauge("model_info", lambda: [((self.model.version,), 1.0)] if self.model is not None else [])
        self.impressions = ImpressionLog(ImpressionSettings(broker=cfg.broker, topic=cfg.topics.events),
                                         tier="streaming") if t2.log_impressions else None
        if self.impressions is not None:
            log = self.impressions
            m.define("impressions_logged_total", "impression events the log acknowledged")
            m.define("impressions_dropped_total", "impression events dropped (buffer full or the log down)")
            m.gauge("impressions_logged_total", lambda: [((), float(log.logged))], counter=True)
            m.gauge("impressions_dropped_total", lambda: [((), float(log.dropped))], counter=True)
        self._task: asyncio.Task | None = None
        # the catalog topic (``catalog.broker``): stock, categories, age flags and new items, in log order
        self.overlay = CatalogOverlay()
        self.catalog_feed = CatalogFeed(settings.catalog, self._apply_catalog, name="tier2-catalog") \
            if feed_configured(settings.catalog) else None
        self.candidates = AnnCandidates(t2.vector_index.ef, t2.vector_index.exact)
        m.gauge("ann_failures_total", lambda: [((), float(self.candidates.failures))], counter=True)
        # tier 2 escalates to the origin the same way the edge does, when its ``router.origin_urls`` name one
        router = Router(settings.router, tier=TIER)
        self.router = router if router.configured else None
        self.handler = Tier2Handler(
            lambda: self.model, self.store, candidates=self.candidates,
            guardrails=GuardrailFilter(self._count_removed_as, self._count_removed), confidence=t2.confidence,
            encode=Encode(TIER, RequestIds(), self.impressions, on_ranked=self._answered,
                          on_degraded=lambda _upstream: m.inc("degraded_total"), signer=signer_from_settings(settings.auth)),
            escalate=Escalate(TIER, self.router))
        for name, hist in self.handler.pipeline.timings.items():
            m.histograms[("stage_seconds", (name,))] = hist

    def _count_removed(self, codes: np.ndarray) -> None:
        self._removed += np.bincount(codes, minlength=len(REASONS))[:len(REASONS)]

    def _count_removed_as(self, reason: int, n: int) -> None:
        self._removed[reason] += n

    def _answered(self, ctx: Tier2Ctx, answer: Answer) -> None:
        self.metrics.inc("candidates_total", (ctx.source,))

    async def _apply_catalog(self, updates: list[ItemUpdate]) -> list[None]:
        """Catalog topic records: the model is rebuilt over the same bundle and index with them applied."""
        self.overlay.add(updates)
        if self.model is not None:
            self.model = self.model.with_catalog(self.overlay)
        return [None] * len(updates)

    def load(self) -> Tier2Model:
        cfg = self.cfg
        model = load_model(cfg.tier2, cfg.registry, cfg.model, self.policy)
        self.model = model.with_catalog(self.overlay) if len(self.overlay) else model
        return self.model

    async def start(self) -> None:
        if self.model is None:
            await asyncio.to_thread(self.load)
        if self.catalog_feed is not None:
            await self.catalog_feed.start()     # replays the catalog topic (not ready until it has)
        if not await self.store.ping():
            logger.warning("tier 2: store not reachable at start; answering degraded until it is")
        if self.impressions is not None:
            self._task = asyncio.create_task(self.impressions.run(), name="tier2-impression-log")

    async def stop(self) -> None:
        try:
            if self.catalog_feed is not None:
                await self.catalog_feed.stop()
            if self._task is not None:
                assert self.impressions is not None     # the task runs the impression log
                self._task.cancel()
                await asyncio.wait((self._task,), timeout=2.0)
                await self.impressions.stop()
            await self.store.close()
            if self.router is not None:
                await self.router.stop()
        finally:
            if self.model is not None:
                self.model.close()
                self.model = None

    def exposition(self) -> bytes:
        """Tier 2's instruments, and the router's when it escalates."""
        out = self.metrics.exposition()
        if self.catalog_feed is not None:
            out += self.catalog_feed.exposition("strata_tier2")
        return out + self.router.exposition() if self.router is not None else out

    def readiness(self) -> tuple[int, dict]:
        if self.model is None:
            return 503, {"ready": False, "reason": "tier 2: no model loaded"}
        feed = self.catalog_feed
        if feed is not None and not feed.replayed:
            return 503, {"ready": False, "reason": "tier 2: catalog topic not replayed yet", "catalog": feed.status()}
        body = {"ready": True, "model_version": self.model.version}
        if feed is not None:
            body["catalog"] = feed.status()
        return 200, body
