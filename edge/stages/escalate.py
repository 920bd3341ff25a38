"""The seam where the router escalates to an upper tier.

The edge always computes its own answer first (cheap); the router issue fills this stage: when
``ctx.route_tier`` is not ``"edge"`` it returns ``SUSPEND`` and its ``complete(ctx)`` asks tier 2 or 3
within a deadline, keeping the edge's answer as the fallback (``degraded`` on a miss). Until that
lands the edge's own answer stands and ``route_tier`` / ``route_reasons`` say where it would go.
"""

from __future__ import annotations

from strata.edge.stages.ctx import RecommendCtx


class Escalate:
    name = "escalate"

    def run(self, ctx: RecommendCtx) -> None:
        return None
