"""The answer in the negotiated codec, with fresh ids, timing and the degraded flag; fills the caches and
hands what was shown to the impression log (when one is configured)."""

from __future__ import annotations

import time

import numpy as np

from strata.edge.answers import Answer, RequestIds
from strata.edge.edge_metrics import EdgeMetrics
from strata.edge.response_cache import ResponseCache
from strata.edge.session_client import StoreHealth
from strata.edge.stages.ctx import RecommendCtx
from strata.shared.serving.impression_log import ImpressionLog, shown
from strata.shared.serving.pipeline import Reply


class Encode:
    name = "encode"

    def __init__(self, cache: ResponseCache, health: StoreHealth | None, ids: RequestIds,
                 metrics: EdgeMetrics, impressions: ImpressionLog | None = None) -> None:
        self.cache = cache
        self.health = health            # None when no store is configured (never degraded then)
        self.ids = ids
        self.metrics = metrics
        self.impressions = impressions  # None: impression logging is off

    def run(self, ctx: RecommendCtx) -> Reply:
        answer = ctx.answer
        log = self.impressions
        if answer is None:
            answer = Answer({"items": ctx.items, "tier": "edge", "confidence": ctx.confidence,
                             "route_reasons": ctx.route_reasons, "route_tier": ctx.route_tier,
                             "model_version": ctx.live.version, "unknown_candidates": ctx.unknown_candidates},
                            ctx.degraded, ctx.media, None if log is None else _shown(ctx))
            self.cache.remember(ctx.key, ctx.exact_key, answer)
            self.metrics.ranked(len(ctx.items), ctx.explored, ctx.unknown_candidates, ctx.filled)
        health = self.health
        degraded = answer.degraded or (health is not None and not health.up)
        if degraded:
            self.metrics.degraded()
        ids = self.ids
        request_id = ids.next()
        impression_id = ids.next()
        payload = answer.render(ctx.media, degraded, request_id, impression_id,
                                (time.perf_counter_ns() - ctx.t0) // 1000, ctx.cache)
        if log is not None and answer.shown is not None:
            req = ctx.req               # None on an exact-body hit: the identical body names the same user
            log.offer(impression_id, int(time.time() * 1000), answer.shown, None if req is None else req.user_id)
        return Reply(200, ctx.media, payload)


def _shown(ctx: RecommendCtx) -> tuple:
    """The served items with the posterior each was sampled from (cache misses only): a plain tuple,
    which the garbage collector stops tracking (cached answers keep it)."""
    req = ctx.req
    items = ctx.items
    alpha, beta = ctx.alpha[ctx.picked], ctx.beta[ctx.picked]
    if ctx.fill_post is not None:
        alpha = np.concatenate((alpha, ctx.fill_post[0]))
        beta = np.concatenate((beta, ctx.fill_post[1]))
    return shown(req.tenant, req.user_id, req.session_id, req.slot, req.context.channel,
                 tuple([it["item_id"] for it in items]), tuple([it["explored"] for it in items]),
                 alpha, beta, ctx.live.version)
