"""Nearest items to the user's session vector (or to the query's items) in the vector index.

The index pre-filters on its payload (in stock, the age gate, banned categories) so the 500 it returns
are usable; the guardrail stages check every candidate again regardless. Recovery rule: when the index
fails, the answer goes on with the other sources (popular items always run) and says degraded.
"""

from __future__ import annotations

import logging

from strata.origin.stages.ctx import OriginCtx
from strata.shared.errors import StrataError
from strata.shared.models.vector_index import PayloadFilter

logger = logging.getLogger(__name__)


class AnnSource:
    name = "ann_source"

    def __init__(self, limit: int = 500, ef: int | None = None, exact: bool = False) -> None:
        self.limit = limit
        self.ef = ef
        self.exact = exact
        self.failures = 0

    def run(self, ctx: OriginCtx) -> None:
        if ctx.given:                 # given items or candidates: no retrieval
            return
        vec = ctx.profile.vec if ctx.oreq.consent and ctx.profile.vec is not None else ctx.query_vec
        if vec is None:
            return
        state = ctx.state
        equals = {"in_stock": 1}
        if not ctx.oreq.req.context.age_verified:
            equals["age_restricted"] = 0
        flt = PayloadFilter(equals=equals, none_of={"category": list(state.policy.banned_categories)})
        try:
            hits = state.index.search(vec, self.limit, flt, ef=self.ef, exact=self.exact)
        except StrataError as exc:
            self.failures += 1
            logger.warning("ANN retrieval failed; popular items stand in: %s", exc.reason)
            ctx.degraded = True
            ctx.route_reasons.append("retrieval_failed")
            return
        row = state.catalog.row
        for h in hits:
            r = row.get(h.key)
            if r is not None:
                ctx.add(self.name, r, max(h.score, 0.0))
