"""Scorer + bandit: features -> ONNX click probability -> Beta posterior with the slot's counts -> one
Thompson draw per candidate."""

from __future__ import annotations

from strata.edge.stages.ctx import RecommendCtx


class Rank:
    name = "rank"

    def run(self, ctx: RecommendCtx) -> None:
        ranker = ctx.live.ranker
        req = ctx.req
        counts = ranker.counts.get(req.tenant, req.slot)
        post = ranker.posterior(ctx.rows, ctx.n_unknown, ctx.ids, req.context, ctx.vec, counts)
        ctx.alpha, ctx.beta, ctx.imps, ctx.n_known = post
        ctx.theta = ranker.draw(post.alpha, post.beta)
        ctx.mean = post.alpha / (post.alpha + post.beta)
