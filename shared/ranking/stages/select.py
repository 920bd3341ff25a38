"""Top-k by the Thompson draws under two caps (``shared.ranking.bandit.select_topk``,
``shared.ranking.guardrails.DiversitySelector``):

- exploration: at most ``explore_budget * k`` explored items (posterior mean below the k-th best);
- diversity: at most ``max_per_category`` items of one category in the answer (or per window, when one
  is configured).
Up to ``FULL_SORT_MAX`` candidates (the usual case) the draws are sorted once and one walk applies both
caps (the exploration budget alone nearly always binds on a prior-only posterior, so a partition-based
top k would walk anyway). Beyond it a partition gives the top k, the cap is checked on it, and the whole
list is sorted and walked only when the top k breaks the cap.

An answer should hold k items, or min(k, distinct candidates) when the request names its candidates (a
tier re-ranks what it is given): ``ctx.target``. What the guardrails removed or the cap skipped is made up
by the ``fill`` stage.
"""

from __future__ import annotations

import numpy as np

from strata.shared.ranking.bandit import FULL_SORT_MAX, select_topk
from strata.shared.ranking.stages.ctx import RankCtx


class ThompsonSelect:
    name = "select"

    def run(self, ctx: RankCtx) -> None:
        model = ctx.model
        k = ctx.req.k
        budget = model.ranker.bandit.budget_slots(k)
        theta = ctx.theta
        if theta.shape[0] <= FULL_SORT_MAX:
            picked, flags = self._walk(ctx, k, budget)
        else:
            picked, flags = self._partitioned(ctx, k, budget)
        ctx.picked = picked
        ctx.flags = flags
        names = item_names(ctx, picked)
        ctx.items = [{"item_id": i, "score": s, "explored": e}
                     for i, s, e in zip(names, theta[picked].round(6).tolist(), flags, strict=True)]
        ctx.explored = sum(flags)
        ctx.target = min(k, ctx.n_given) if ctx.n_given else k

    @staticmethod
    def _walk(ctx: RankCtx, k: int, budget: int) -> tuple[np.ndarray, list[bool]]:
        """One sort by the draws, then one walk under both caps (the exploration budget and the diversity rule):
        the same answer as the top k with the budget applied and then the cap, in a handful of NumPy calls."""
        theta, mean, rows = ctx.theta, ctx.mean, ctx.rows
        n = theta.shape[0]
        guard = ctx.model.guard
        ranked = (-theta).argsort(kind="stable")
        explored = None
        ctx.margin = 1.0
        if n > k:
            part = mean.copy()
            part.partition((n - k - 1, n - k))
            kth = part[n - k]
            ctx.margin = float(kth - part[n - k - 1])
            explored = mean < kth
        cats = guard.categories_of(rows) if ctx.n_unknown else guard.category_codes[rows]
        pos, flags = ctx.model.diversity.select(ranked, cats, k, explored, budget)
        ctx.picked_cats = None
        return np.asarray(pos, dtype=np.int64), flags

    @staticmethod
    def _partitioned(ctx: RankCtx, k: int, budget: int) -> tuple[np.ndarray, list[bool]]:
        """Many candidates: partition for the top k; the cap is checked on it, the whole list walked only when
        the top k breaks it."""
        model = ctx.model
        theta, mean, rows = ctx.theta, ctx.mean, ctx.rows
        d = select_topk(theta, mean, k, budget)
        ctx.margin = d.margin
        guard, diversity = model.guard, model.diversity
        picked_cats = None if k <= diversity.max_per_category else guard.categories_of(rows[d.order]).tolist()
        if picked_cats is None or diversity.satisfied(picked_cats):
            ctx.picked_cats = picked_cats
            return d.order, d.explored.tolist()
        cats = guard.categories_of(rows)
        order = (-theta).argsort(kind="stable")
        pos, flags = diversity.select(order.tolist(), cats, k, mean < d.kth, budget)
        picked = np.asarray(pos, dtype=np.int64)
        ctx.picked_cats = cats[picked].tolist()
        return picked, flags


def item_names(ctx: RankCtx, picked: np.ndarray) -> list[str]:
    """The item ids of candidate positions ``picked`` (given ids as the caller spelled them)."""
    ids = ctx.ids
    if ids is None:
        item_ids = ctx.model.bundle.item_ids
        return [item_ids[r] for r in ctx.rows[picked].tolist()]
    if ctx.pos is not None:                  # candidates filtered by position (see the guardrails stage)
        picked = ctx.pos[picked]
    return [ids[i] for i in picked.tolist()]
