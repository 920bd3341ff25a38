"""Banned items and categories and the age gate (``shared.guardrails``): kept and removed, with reasons.

Pools are filtered once per live model and age state (``LiveModel.clean_pool``); given candidates are
filtered here with one gather of precomputed reason codes. Removed candidates are counted by reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.stages.ctx import RecommendCtx


class GuardrailFilter:
    name = "guardrails"

    def __init__(self, on_removed: Callable[[np.ndarray], None]) -> None:
        self.on_removed = on_removed

    def run(self, ctx: RecommendCtx) -> None:
        live = ctx.live
        age = ctx.req.context.age_verified
        ctx.removed = 0
        if ctx.channel_pool:
            ctx.rows = live.clean_pool(ctx.req.context.channel, age)
            return
        rows = ctx.rows
        if not ctx.n_unknown:
            reason = live.guard.codes(age)[rows]
            if not reason.any():           # the common case: nothing to remove
                return
            res = live.guard.result(reason)
        else:
            res = live.guard.filter(rows, age, ctx.ids)
            if not res.removed.shape[0]:
                return
        kept = res.kept
        ids = ctx.ids
        ctx.ids = [ids[i] for i in kept.tolist()]
        ctx.rows = rows[kept]
        if ctx.n_unknown:
            ctx.n_unknown = int(np.count_nonzero(ctx.rows < 0))
        ctx.removed = res.removed.shape[0]
        self.on_removed(res.reason_codes)
