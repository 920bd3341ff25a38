"""Popular items of the request's segment (its channel), the source that never fails and never needs
personal data: cold start, no consent, and the fallback when retrieval is down."""

from __future__ import annotations

from strata.origin.stages.ctx import OriginCtx


class PopularSource:
    name = "popular_source"

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit

    def run(self, ctx: OriginCtx) -> None:
        if ctx.given:                 # given items or candidates: no retrieval
            return
        rows = ctx.state.pool(ctx.oreq.req.context.channel)[:self.limit].tolist()
        n = max(len(rows), 1)
        for i, r in enumerate(rows):
            ctx.add(self.name, r, 1.0 - i / n)
