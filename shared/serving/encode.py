"""The answer in the negotiated codec, with fresh ids, timing and the degraded flag: the last stage of every
ranking tier's request path, with the tier's name as a parameter.

It renders one of three answers: a cached one (``ctx.answer``, set by a tier's cache stage), another
tier's (``ctx.upstream``, set by the router's ``Escalate``: rendered with that tier's name, its impression
id, and never handed to ``on_ranked``, so a tier never caches an escalated answer under its own key), or
the one this request just ranked (handed to ``on_ranked``: the edge caches it there). What a fresh answer
showed goes to the impression log when one is configured. With a ``signer`` (``auth.impression_secret``), the
impression id of this tier's answers is signed over tenant, session, shown items and time
(``shared.auth.impressions``; the items' tag once per answer, kept with it in the cache), so the processor
counts only impressions and clicks that were really served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, Protocol

import numpy as np

from strata.shared.auth.impressions import ImpressionSigner
from strata.shared.ranking.stages.ctx import RankCtx, TierCtx
from strata.shared.serving.answers import Answer, RequestIds
from strata.shared.serving.impression_log import ImpressionLog, event_prior, shown
from strata.shared.serving.pipeline import Reply


class Health(Protocol):
    up: bool


class Encode(Generic[TierCtx]):
    name = "encode"

    def __init__(self, tier: str, ids: RequestIds, impressions: ImpressionLog | None = None, *,
                 health: Health | None = None,
                 on_ranked: Callable[[TierCtx, Answer], None] | None = None,
                 on_degraded: Callable[[str | None], None] | None = None,
                 signer: ImpressionSigner | None = None) -> None:
        self.tier = tier
        self.signer = signer            # None: plain ids (auth.impression_secret unset)
        self.ids = ids
        self.impressions = impressions  # None: impression logging is off
        self.health = health            # None: no store to be down (never degraded for that)
        self.on_ranked = on_ranked      # a fresh answer of this tier (cache it, count it)
        self.on_degraded = on_degraded  # a degraded answer left: the upper tier's name when it gave it, else None

    def run(self, ctx: TierCtx) -> Reply:
        answer = ctx.answer
        log = self.impressions
        upstream = ctx.upstream
        impression_id = None
        if answer is None:
            if upstream is not None:
                body = upstream.body
                answer = Answer({"items": body["items"], "tier": upstream.tier, "confidence": body.get("confidence"),
                                 "route_reasons": body.get("route_reasons", []), "route_tier": body.get("route_tier"),
                                 "model_version": body.get("model_version"),
                                 "unknown_candidates": body.get("unknown_candidates", 0)},
                                upstream.degraded or ctx.degraded, ctx.media)
                impression_id = body.get("impression_id")
            else:
                answer = Answer({"items": ctx.items, "tier": self.tier, "confidence": ctx.confidence,
                                 "route_reasons": ctx.route_reasons, "route_tier": ctx.route_tier,
                                 "model_version": ctx.model.version, "unknown_candidates": ctx.unknown_candidates},
                                ctx.degraded, ctx.media, None if log is None else shown_of(ctx))
                signer = self.signer
                if signer is not None:          # the items' tag once per answer; each serving signs its own time
                    asked = ctx.req
                    shown_ = answer.shown           # its items and priors when the impression log made it, else here
                    if shown_ is not None:
                        ids, prior = shown_[5], shown_[10]
                    else:
                        ids, prior = [it["item_id"] for it in ctx.items], served_prior(ctx)
                    answer.signing = signer.prepare(asked.tenant, asked.session_id, ids, event_prior(prior))
                if self.on_ranked is not None:
                    self.on_ranked(ctx, answer)
        health = self.health
        degraded = answer.degraded or (health is not None and not health.up)
        if degraded and self.on_degraded is not None:
            self.on_degraded(upstream.tier if upstream is not None and ctx.answer is None else None)
        ids = self.ids
        request_id = ctx.request_id or ids.next()     # escalated: the id the upper tier logged too
        ts_ms = 0
        if impression_id is None:
            signer = self.signer
            # signing is None for an upper tier's answer that came without its impression id
            if signer is not None and (signing := answer.signing) is not None:
                ts_ms = int(time.time() * 1000)
                impression_id = signer.sign_prepared(signing, ts_ms)
            else:
                impression_id = ids.next()
        payload = answer.render(ctx.media, degraded, request_id, impression_id,
                                (time.perf_counter_ns() - ctx.t0) // 1000, ctx.cache)
        if log is not None and answer.shown is not None and upstream is None:
            req = getattr(ctx, "req", None)     # unset on an exact-body hit: the identical body names the same user
            log.offer(impression_id, ts_ms or int(time.time() * 1000), answer.shown,
                      None if req is None else req.user_id)
        return Reply(200, ctx.media, payload)


def served_prior(ctx: RankCtx) -> np.ndarray:
    """The scorer's p behind each served item, in order (what ``shown_of`` keeps as the prior)."""
    prior = ctx.prior[ctx.picked]
    return prior if ctx.fill_post is None else np.concatenate((prior, ctx.fill_post[2]))


def shown_of(ctx: RankCtx) -> tuple:
    """The served items with the posterior each was sampled from: a plain tuple, which the garbage collector
    stops tracking (cached answers keep it)."""
    req = ctx.req
    items = ctx.items
    picked = ctx.picked
    alpha, beta, prior = ctx.alpha[picked], ctx.beta[picked], ctx.prior[picked]
    if ctx.fill_post is not None:
        alpha = np.concatenate((alpha, ctx.fill_post[0]))
        beta = np.concatenate((beta, ctx.fill_post[1]))
        prior = np.concatenate((prior, ctx.fill_post[2]))
    return shown(req.tenant, req.user_id, req.session_id, req.slot, req.context.channel,
                 tuple([it["item_id"] for it in items]), tuple([it["explored"] for it in items]),
                 alpha, beta, ctx.model.version, prior)
