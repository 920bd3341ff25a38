"""Candidates: the request's ids (deduplicated, mapped to bundle rows) or the channel's cached pool."""

from __future__ import annotations

from strata.edge.stages.ctx import RecommendCtx


class Candidates:
    name = "candidates"

    def run(self, ctx: RecommendCtx) -> None:
        req = ctx.req
        cand = req.candidates
        ctx.pos = None
        if not cand:                       # none or [] -> the channel's cached pool (filtered per age state)
            ctx.channel_pool = True
            ctx.ids = None
            ctx.n_unknown = ctx.unknown_candidates = ctx.n_given = 0
            return
        if len(set(cand)) != len(cand):
            cand = list(dict.fromkeys(cand))   # dedupe, keep order
        ctx.channel_pool = False
        ctx.n_given = len(cand)
        ctx.ids = cand
        ctx.rows, ctx.n_unknown = ctx.live.ranker.lookup(cand)
        ctx.unknown_candidates = ctx.n_unknown
