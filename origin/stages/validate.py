"""Plain objects -> an ``OriginRequest`` (422 names the field and the reason); the query's words."""

from __future__ import annotations

from strata.origin.catalog import words
from strata.origin.stages.ctx import OriginCtx
from strata.shared.auth.gate import bind_tenant
from strata.shared.contracts.origin import parse_origin


class Validate:
    name = "validate"

    def run(self, ctx: OriginCtx) -> None:
        if ctx.caller is not None:
            bind_tenant(ctx.obj, ctx.caller)
        ctx.oreq = parse_origin(ctx.obj, explain=ctx.explain)
        if ctx.oreq.query:
            ctx.query_words = words(ctx.oreq.query)
        if not ctx.oreq.consent:
            ctx.route_reasons.append("no_consent_context_only")
