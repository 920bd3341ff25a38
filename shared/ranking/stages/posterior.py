"""Scorer + bandit: features -> ONNX click probability -> Beta posterior with the slot's counts (``ctx.counts``,
from the tier's counts stage; ``shared.ranking.bandit``) -> one Thompson draw per candidate."""

from __future__ import annotations

from strata.shared.ranking.stages.ctx import RankCtx


class PosteriorStage:
    name = "posterior"

    def run(self, ctx: RankCtx) -> None:
        ranker = ctx.model.ranker
        rows, n_unknown = ctx.rows, ctx.n_unknown
        counts = ctx.counts.of(rows, n_unknown, ctx.ids if n_unknown else None)
        clicks, imps, expected = (None, None, None) if counts is None else counts
        post = ranker.posterior(rows, n_unknown, ctx.req.context, ctx.vec, clicks, imps, expected)
        ctx.alpha, ctx.beta, ctx.imps, ctx.n_known, ctx.prior = post
        ctx.theta = ranker.draw(post.alpha, post.beta)
        ab = ctx.strength = post.alpha + post.beta
        ctx.mean = post.alpha / ab
