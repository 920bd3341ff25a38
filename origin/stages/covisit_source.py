"""Items co-visited with the request's seed items (``origin.covisitation``): "seen together in sessions".

Seeds: the items the query found best (content source) and, with consent, the user's purchases from the
profile. Score = the best co-visitation score to any seed (in [0, 1]). A neighbour of a query seed also
inherits query relevance, score x the seed's match, never lowering an item's own match: "people who
looked at what you searched for also looked at this". Nothing to do without a table in the bundle or
without seeds.
"""

from __future__ import annotations

import numpy as np

from strata.origin.stages.ctx import OriginCtx


class CovisitationSource:
    name = "covisitation_source"

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit

    def run(self, ctx: OriginCtx) -> None:
        table = ctx.state.covisitation
        if table is None or ctx.given or self.limit == 0:
            return
        seeds = list(ctx.seeds)
        if ctx.oreq.consent and ctx.profile.purchased:
            row = ctx.state.catalog.row
            seeds += [row[i] for i in sorted(ctx.profile.purchased) if i in row]
        if not seeds:
            return
        match = ctx.query_match
        best: dict[int, float] = {}
        relevance: dict[int, float] = {}
        for seed in dict.fromkeys(seeds):
            rows, scores = table.of(np.array([seed], dtype=np.int64))
            w = match.get(seed, 0.0)
            for r, s in zip(rows.tolist(), scores.tolist(), strict=True):
                if s > best.get(r, -1.0):
                    best[r] = s
                if w and s * w > relevance.get(r, 0.0):
                    relevance[r] = s * w
        for r in sorted(best, key=lambda r: (-best[r], r))[:self.limit]:
            ctx.add(self.name, r, best[r])
            if relevance.get(r, 0.0) > match.get(r, 0.0):
                match[r] = relevance[r]
