"""``/v1/explain`` with ``item_ids``: those items are the candidates (unknown ids are reported removed)."""

from __future__ import annotations

from strata.origin.stages.ctx import OriginCtx


class GivenItems:
    name = "given_items"

    def run(self, ctx: OriginCtx) -> None:
        ids = ctx.oreq.item_ids
        if not ids:
            return
        row = ctx.state.catalog.row
        for i in ids:
            r = row.get(i)
            if r is None:
                ctx.removed["unknown_item"] += 1
            else:
                ctx.add(self.name, r, 1.0)
