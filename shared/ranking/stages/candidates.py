"""Candidates: the request's ids (deduplicated, mapped to bundle rows) or, when it names none, the channel's
pool (already filtered for the request's age state; ``RankingModel.pool``). A tier may replace the pool
with candidates of its own after this stage (tier 2: ANN neighbours of the session vector)."""

from __future__ import annotations

from strata.shared.ranking.stages.ctx import RankCtx


class GivenCandidates:
    name = "candidates"

    def run(self, ctx: RankCtx) -> None:
        cand = ctx.req.candidates
        ctx.pos = None
        ctx.removed = 0
        if not cand:                       # none or [] -> the channel's pool
            ctx.channel_pool = True
            ctx.ids = None
            ctx.rows = ctx.model.pool(ctx.req.context.channel, ctx.req.context.age_verified)
            ctx.n_unknown = ctx.unknown_candidates = ctx.n_given = 0
            return
        ranker = ctx.model.ranker
        rows, n_unknown = ranker.lookup(cand)
        if ranker.repeats(rows) if not n_unknown else len(set(cand)) != len(cand):
            cand = list(dict.fromkeys(cand))   # dedupe, keep order
            rows, n_unknown = ranker.lookup(cand)
        ctx.channel_pool = False
        ctx.n_given = len(cand)
        ctx.ids = cand
        ctx.rows = rows
        ctx.n_unknown = ctx.unknown_candidates = n_unknown
