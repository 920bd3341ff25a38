"""Top-k by the Thompson draws under two caps (``shared.ranking.bandit.select_topk``,
``shared.ranking.guardrails.DiversitySelector``):

- exploration: at most ``explore_budget * k`` explored items (posterior mean below the k-th best);
- diversity: at most ``max_per_category`` items of one category in the answer (or per window, when one
  is configured).
The fast path partitions (no full sort) and checks the cap on its top k; only when that breaks the cap is
the whole list sorted and walked. When the cap cannot bind (k <= the cap) it is not checked at all.

An answer should hold k items, or min(k, distinct candidates) when the request names its candidates (a
tier re-ranks what it is given): ``ctx.target``. What the guardrails removed or the cap skipped is made up
by the ``fill`` stage.
"""

from __future__ import annotations

import numpy as np

from strata.shared.ranking.bandit import greedy_mask, select_topk
from strata.shared.ranking.stages.ctx import RankCtx


class ThompsonSelect:
    name = "select"

    def run(self, ctx: RankCtx) -> None:
        model = ctx.model
        k = ctx.req.k
        budget = model.ranker.bandit.budget_slots(k)
        theta, mean = ctx.theta, ctx.mean
        d = select_topk(theta, mean, k, budget)
        guard = model.guard
        diversity = model.diversity
        rows = ctx.rows
        if k <= diversity.max_per_category:         # the cap cannot bind
            picked_cats = None
        elif ctx.n_unknown:
            picked_cats = guard.categories_of(rows[d.order]).tolist()
        else:
            picked_cats = guard.category_codes[rows[d.order]].tolist()
        if picked_cats is None or diversity.satisfied(picked_cats):
            picked, flags = d.order, d.explored.tolist()
        else:
            cats = guard.categories_of(rows)
            order = np.argsort(-theta, kind="stable")
            pos, flags = diversity.select(order.tolist(), cats, k, ~greedy_mask(mean, k), budget)
            picked = np.asarray(pos, dtype=np.int64)
            picked_cats = cats[picked].tolist()
        ctx.picked = picked
        ctx.flags = flags
        ctx.picked_cats = picked_cats
        ctx.margin = d.margin
        names = item_names(ctx, picked)
        ctx.items = [{"item_id": i, "score": s, "explored": e}
                     for i, s, e in zip(names, theta[picked].round(6).tolist(), flags, strict=True)]
        ctx.explored = sum(flags)
        ctx.target = min(k, ctx.n_given) if ctx.n_given else k


def item_names(ctx: RankCtx, picked: np.ndarray) -> list[str]:
    """The item ids of candidate positions ``picked`` (given ids as the caller spelled them)."""
    ids = ctx.ids
    if ids is None:
        item_ids = ctx.model.bundle.item_ids
        return [item_ids[r] for r in ctx.rows[picked].tolist()]
    if ctx.pos is not None:                  # candidates filtered by position (see the guardrails stage)
        picked = ctx.pos[picked]
    return [ids[i] for i in picked.tolist()]
