"""Where the router would send this request (``shared.ranking.confidence.route_by_confidence``): the same pure
function at every tier. ``route_reasons`` of the answer: what happened on the way (``ctx.reasons``, in stage
order), then why this route (each reason once)."""

from __future__ import annotations

from strata.shared.ranking.confidence import ConfidenceConfig, route_by_confidence
from strata.shared.ranking.stages.ctx import RankCtx


class Route:
    name = "route"

    def __init__(self, cfg: ConfidenceConfig) -> None:
        self.cfg = cfg

    def run(self, ctx: RankCtx) -> None:
        tier, why = route_by_confidence(ctx.confidence, ctx.signals, ctx.req.explain, self.cfg)
        ctx.route_tier = tier
        reasons = ctx.reasons
        if reasons:
            ctx.route_reasons = list(dict.fromkeys(reasons + why))
        else:
            ctx.route_reasons = why
