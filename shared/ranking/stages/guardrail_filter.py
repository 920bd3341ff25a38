"""Banned items and categories and the age gate (``shared.ranking.guardrails``) on every candidate: kept and
removed, with reasons.

Pools are filtered once per model and age state (``RankingModel.pool``); given candidates are filtered
here with one gather of precomputed reason codes. Removed candidates are counted by reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from strata.shared.ranking.stages.ctx import RankCtx


class GuardrailFilter:
    name = "guardrails"

    def __init__(self, on_removed: Callable[[int, int], None],
                 on_removed_codes: Callable[[np.ndarray], None]) -> None:
        """``on_removed(reason, n)`` / ``on_removed_codes(codes)`` count removals by reason
        (``shared.ranking.guardrails.REASONS``; ``KEPT`` entries in ``codes`` are ignored)."""
        self.on_removed = on_removed
        self.on_removed_codes = on_removed_codes

    def run(self, ctx: RankCtx) -> None:
        if ctx.channel_pool:                # pools are clean already
            return
        age = ctx.req.context.age_verified
        rows = ctx.rows
        guard = ctx.model.guard
        if not ctx.n_unknown:
            if not guard.removes[age]:      # nothing in the catalog is removed in this age state
                return
            kept = guard.allowed(age)[rows].nonzero()[0]
            if kept.shape[0] == rows.shape[0]:
                return
            ctx.pos = kept                  # ids stay as given; names are looked up for the answer only
            reason = None
        else:
            res = guard.filter(rows, age, ctx.ids)
            if not res.removed.shape[0]:
                return
            kept, reason = res.kept, res.reason_codes
            ids = ctx.ids
            assert ids is not None          # unknown rows come with the request's ids (filter refuses them without)
            ctx.ids = [ids[i] for i in kept.tolist()]
        ctx.rows = rows[kept]
        if ctx.n_unknown:
            ctx.n_unknown = int(np.count_nonzero(ctx.rows < 0))
        removed = ctx.removed = rows.shape[0] - kept.shape[0]
        sole = guard.sole_reason[age]
        if sole is not None:                # every removal has the same reason: no per-item reasons needed
            self.on_removed(sole, removed)
        else:
            self.on_removed_codes(guard.codes(age)[rows] if reason is None else reason)
