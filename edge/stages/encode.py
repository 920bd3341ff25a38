"""The answer in the negotiated codec, with fresh ids, timing and the degraded flag; fills the caches."""

from __future__ import annotations

import time

from edge.answers import Answer, RequestIds
from edge.edge_metrics import EdgeMetrics
from edge.response_cache import ResponseCache
from edge.session_client import StoreHealth
from edge.stages.ctx import RecommendCtx
from shared.pipeline import Reply


class Encode:
    name = "encode"

    def __init__(self, cache: ResponseCache, health: StoreHealth | None, ids: RequestIds,
                 metrics: EdgeMetrics) -> None:
        self.cache = cache
        self.health = health            # None when no store is configured (never degraded then)
        self.ids = ids
        self.metrics = metrics

    def run(self, ctx: RecommendCtx) -> Reply:
        answer = ctx.answer
        if answer is None:
            answer = Answer({"items": ctx.items, "tier": "edge", "confidence": ctx.confidence,
                             "route_reasons": ctx.route_reasons, "route_tier": ctx.route_tier,
                             "model_version": ctx.live.version, "unknown_candidates": ctx.unknown_candidates},
                            ctx.degraded, ctx.media)
            self.cache.remember(ctx.key, ctx.exact_key, answer)
            self.metrics.ranked(len(ctx.items), ctx.explored, ctx.unknown_candidates, ctx.filled)
        health = self.health
        degraded = answer.degraded or (health is not None and not health.up)
        if degraded:
            self.metrics.degraded()
        ids = self.ids
        payload = answer.render(ctx.media, degraded, ids.next(), ids.next(),
                                (time.perf_counter_ns() - ctx.t0) // 1000, ctx.cache)
        return Reply(200, ctx.media, payload)
