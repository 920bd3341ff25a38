"""The slot's click/impression counts as the PoP holds them (``edge.bandit_cache``, refreshed in the
background): never a store read on the request path."""

from __future__ import annotations

from strata.edge.stages.ctx import EdgeCtx


class PopCounts:
    name = "counts"

    def run(self, ctx: EdgeCtx) -> None:
        req = ctx.req
        ctx.counts = ctx.model.counts.get(req.tenant, req.slot)
