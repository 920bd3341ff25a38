"""How sure the edge is of its answer, and where the router would send the request (``shared.ranking.confidence``)."""

from __future__ import annotations

from strata.edge.stages.ctx import RecommendCtx
from strata.shared.ranking.confidence import ConfidenceConfig, Signals, confidence, route_by_confidence


class Confidence:
    name = "confidence"

    def __init__(self, cfg: ConfidenceConfig) -> None:
        self.cfg = cfg

    def run(self, ctx: RecommendCtx) -> None:
        n = ctx.rows.shape[0]
        sig = Signals(session_known=ctx.vec is not None, session_age_s=ctx.vec_age_s,
                      concentration=ctx.concentration, margin=ctx.margin,
                      known_share=ctx.n_known / n if n else 0.0)
        ctx.confidence = confidence(sig, self.cfg)
        ctx.route_tier, ctx.route_reasons = route_by_confidence(ctx.confidence, sig, ctx.req.explain, self.cfg)
