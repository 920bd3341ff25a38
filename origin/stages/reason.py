"""``/v1/explain``: one grounded reason per selected item, from the configured reasoner (falling back to
the template reasoner, which always answers). The query reaches a reasoner only redacted (``origin.pii``); the
profile's recent categories reach it only with consent and only where they are catalog categories (a preference
event can name any string: it never becomes prompt text). An LLM call waits only when ``admission`` lets it
(``origin.explain_admission``: bounded in flight, per-tenant token budget); otherwise the template answers at
once."""

from __future__ import annotations

from typing import Protocol

from strata.origin.explain_admission import ExplainAdmission
from strata.origin.reasoner.base import ExplainInput, Reasoner
from strata.origin.reasoner.template import TemplateReasoner
from strata.origin.stages.ctx import OriginCtx
from strata.shared.serving.pipeline import SUSPEND


class Redactor(Protocol):
    def redact(self, text: str): ...       # -> ``origin.pii.redactor.Redacted``


class ReasonStage:
    name = "reason"
    suspends = True

    def __init__(self, reasoner: Reasoner, redactor: Redactor, admission: ExplainAdmission | None = None) -> None:
        self.reasoner = reasoner
        self.redactor = redactor
        self.admission = admission
        self.template = TemplateReasoner()

    def _input(self, ctx: OriginCtx) -> ExplainInput:
        cat = ctx.state.catalog
        query = self.redactor.redact(ctx.oreq.query).text if ctx.oreq.query else None
        known = cat.category_index
        recent = tuple(c for c in ctx.profile.recent_categories if c in known) if ctx.oreq.consent else ()
        return ExplainInput(items=[cat.facts(r) for r in ctx.picked.tolist()], query=query,
                            recent_categories=recent, channel=ctx.oreq.req.context.channel,
                            sources=[ctx.sources[r] for r in ctx.picked.tolist()],
                            categories=frozenset(known), vocabulary=cat.vocabulary())

    def run(self, ctx: OriginCtx) -> object:
        if self.reasoner.blocking:
            if self.admission is None:
                return SUSPEND
            inp = self._input(ctx)
            refused = self.admission.admit(ctx.oreq.req.tenant, inp)
            if refused is None:
                return SUSPEND
            ctx.explanation = self.template.explain_now(inp, fallback=refused)
            return None
        ctx.explanation = self.reasoner.explain_now(self._input(ctx))
        return None

    async def complete(self, ctx: OriginCtx) -> None:
        try:
            ctx.explanation = await self.reasoner.explain(self._input(ctx))
        finally:
            if self.admission is not None:
                self.admission.release()
