"""The request's own candidates: ``item_ids`` of ``/v1/explain`` (every one explained that passes the filters),
or ``candidates`` of either route (the answer's top k comes from them). Known ones are the only candidates (the
retrieval sources stand aside); unknown ids are reported removed (``unknown_item``). When no candidate is known,
the origin answers from its own sources and says so (``candidates_unknown``) rather than silently ignoring them.
"""

from __future__ import annotations

from strata.origin.stages.ctx import OriginCtx


class GivenItems:
    name = "given_items"

    def run(self, ctx: OriginCtx) -> None:
        ids = ctx.oreq.item_ids or ctx.oreq.req.candidates
        if not ids:
            return
        row = ctx.state.catalog.row
        name = self.name if ctx.oreq.item_ids else "given_candidates"
        for i in dict.fromkeys(ids):
            r = row.get(i)
            if r is None:
                ctx.removed["unknown_item"] += 1
            else:
                ctx.add(name, r, 1.0)
                ctx.given = True
        if not ctx.given:
            ctx.route_reasons.append("candidates_unknown")
