"""Items out of stock are removed (reason ``out_of_stock``); stock comes from ``POST /v1/items``."""

from __future__ import annotations

from strata.origin.errors import GuardrailUnavailable
from strata.origin.stages.ctx import OriginCtx


class InStockFilter:
    name = "in_stock"

    def run(self, ctx: OriginCtx) -> None:
        rows = ctx.rows
        try:
            keep = ctx.state.catalog.stock[rows] > 0
        except Exception as exc:
            raise GuardrailUnavailable(f"stock check could not run ({type(exc).__name__}: {exc})",
                                       field="in_stock") from exc
        dropped = int(rows.shape[0] - keep.sum())
        if dropped:
            ctx.removed["out_of_stock"] += dropped
            ctx.rows = rows[keep]
