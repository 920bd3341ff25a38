"""``/v1/explain``: one grounded reason per selected item, from the configured reasoner (falling back to
the template reasoner, which always answers). The query reaches a reasoner only redacted."""

from __future__ import annotations

from strata.origin.reasoner.base import ExplainInput, Reasoner
from strata.origin.redaction import Redactor
from strata.origin.stages.ctx import OriginCtx
from strata.shared.serving.pipeline import SUSPEND


class ReasonStage:
    name = "reason"
    suspends = True

    def __init__(self, reasoner: Reasoner, redactor: Redactor) -> None:
        self.reasoner = reasoner
        self.redactor = redactor

    def _input(self, ctx: OriginCtx) -> ExplainInput:
        cat = ctx.state.catalog
        query = self.redactor.redact(ctx.oreq.query).text if ctx.oreq.query else None
        recent = ctx.profile.recent_categories if ctx.oreq.consent else ()
        return ExplainInput(items=[cat.facts(r) for r in ctx.picked.tolist()], query=query,
                            recent_categories=recent, channel=ctx.oreq.req.context.channel,
                            sources=[ctx.sources[r] for r in ctx.picked.tolist()],
                            categories=frozenset(cat.category_index), vocabulary=cat.vocabulary())

    def run(self, ctx: OriginCtx) -> object:
        if self.reasoner.blocking:
            return SUSPEND
        ctx.explanation = self.reasoner.explain_now(self._input(ctx))
        return None

    async def complete(self, ctx: OriginCtx) -> None:
        ctx.explanation = await self.reasoner.explain(self._input(ctx))
