"""Plain objects -> a ``RecommendRequest`` (422 names the field and the reason)."""

from __future__ import annotations

from strata.edge.stages.ctx import RecommendCtx
from strata.shared.contracts.api import parse_recommend


class Validate:
    name = "validate"

    def run(self, ctx: RecommendCtx) -> None:
        ctx.req = parse_recommend(ctx.obj)
