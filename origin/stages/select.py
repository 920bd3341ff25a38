"""Selector: the top k under the category cap (``shared.ranking.guardrails.DiversitySelector``, the rule every
tier applies: at most ``max_per_category`` of one category in the answer, or per window when one is
configured) with ``explore_slots`` exploration slots. An answer the cap cannot complete is completed with the
cap relaxed step by step, and says ``diversity_cap_relaxed``.

Exploration: that many candidates are drawn (seeded) from just below the top k and placed in the
last slots, flagged ``explored`` so the impression log can tell them apart; the cap applies to them too.
"""

from __future__ import annotations

import numpy as np

from strata.origin.stages.ctx import OriginCtx
from strata.shared.ranking.guardrails import DIVERSITY_RELAXED


class Select:
    name = "select"

    def __init__(self, explore_slots: int = 1, explore_depth: int = 50, seed: int = 0) -> None:
        self.explore_slots = explore_slots
        self.explore_depth = explore_depth
        self._rng = np.random.default_rng(seed)

    def run(self, ctx: OriginCtx) -> None:
        k = ctx.oreq.req.k
        if ctx.oreq.item_ids:           # explaining given items: all that passed the filters, in score order
            ctx.picked = ctx.rows[ctx.order]
            ctx.explored = [False] * ctx.picked.shape[0]
            return
        order = ctx.order.tolist()
        budget = min(self.explore_slots, k // 5)
        explored = np.zeros(ctx.rows.shape[0], dtype=bool)
        below = order[k:k + self.explore_depth]     # candidates just below the top k
        if budget and below:
            budget = min(budget, len(below))
            picks = self._rng.choice(len(below), size=budget, replace=False)
            chosen = [below[i] for i in sorted(picks.tolist())]
            explored[chosen] = True
            taken = set(chosen)
            rest = [p for p in order if p not in taken]
            order = rest[:k - budget] + chosen + rest[k - budget:]
        cats = ctx.state.guard.categories_of(ctx.rows)
        diversity = ctx.state.diversity
        pos, flags = diversity.select(order, cats, k, explored, budget)
        short = min(k, len(order)) - len(pos)
        if short > 0:
            taken = set(pos)
            more = diversity.relax([p for p in order if p not in taken], cats, short, prior=cats[pos].tolist())
            if more:
                pos, flags = pos + more, flags + [False] * len(more)
                if not diversity.satisfied(cats[pos]):     # a sliding window may still hold
                    ctx.route_reasons.append(DIVERSITY_RELAXED)
        ctx.picked = ctx.rows[np.asarray(pos, dtype=np.int64)] if pos else ctx.rows[:0]
        ctx.explored = flags
