"""Items the user already bought are removed (reason ``already_purchased``) when ``origin.filter_purchased``
is on: for consumables a repeat is welcome, for a television it is not, so it is a per-deployment choice.
Purchases come from the profile (the stream processor records them), so without consent or a store this
filter has nothing to act on. Given items (``/v1/explain`` with ``item_ids``) are explained regardless."""

from __future__ import annotations

import numpy as np

from strata.origin.stages.ctx import OriginCtx


class AlreadyPurchasedFilter:
    name = "already_purchased"

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def run(self, ctx: OriginCtx) -> None:
        bought = ctx.profile.purchased
        if not self.enabled or not bought or not ctx.oreq.consent or ctx.oreq.item_ids:
            return
        rows = ctx.rows
        ids = ctx.state.catalog.item_ids
        keep = np.fromiter((ids[r] not in bought for r in rows.tolist()), dtype=bool, count=rows.shape[0])
        dropped = int(rows.shape[0] - keep.sum())
        if dropped:
            ctx.removed["already_purchased"] += dropped
            ctx.rows = rows[keep]
