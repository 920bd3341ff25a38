"""Top-k by the Thompson draws under two caps, and a fill from the pool when the candidates fall short.

- exploration: at most ``explore_budget * k`` explored items (posterior mean below the k-th best);
- diversity (``shared.ranking.guardrails.DiversitySelector``): at most ``max_per_category`` items of one
  category in any ``diversity_window`` consecutive positions.
The fast path is ``shared.ranking.bandit.select_topk`` (partitions, no full sort); only when its top k breaks
the diversity cap is the whole list sorted and walked.

An answer has k items, or min(k, distinct candidates) when the request names its candidates (the
edge re-ranks what it is given). The guardrails never make it shorter: items they removed, or that the
diversity cap skipped, are replaced from the channel's pool through the same guardrails and caps,
ranked the same way and placed after the candidates' items.
"""

from __future__ import annotations

import numpy as np

from strata.edge.stages.ctx import RecommendCtx
from strata.shared.ranking.bandit import greedy_mask, select_topk


class Select:
    name = "select"

    def run(self, ctx: RecommendCtx) -> None:
        live = ctx.live
        k = ctx.req.k
        budget = live.ranker.bandit.budget_slots(k)
        theta, mean = ctx.theta, ctx.mean
        d = select_topk(theta, mean, k, budget)
        guard = live.guard
        rows = ctx.rows
        if k <= live.diversity.max_per_category:      # the cap cannot bind
            picked_cats = None
        elif ctx.n_unknown:
            picked_cats = guard.categories_of(rows[d.order]).tolist()
        else:
            picked_cats = guard.category_codes[rows[d.order]].tolist()
        if picked_cats is None or live.diversity.satisfied(picked_cats):
            picked, flags = d.order, d.explored.tolist()
        else:
            cats = guard.categories_of(rows)
            order = np.argsort(-theta, kind="stable")
            pos, flags = live.diversity.select(order.tolist(), cats, k, ~greedy_mask(mean, k), budget)
            picked = np.asarray(pos, dtype=np.int64)
            picked_cats = cats[picked].tolist()
        ctx.picked = picked
        names = _names(ctx, rows, ctx.ids, picked)
        items = [{"item_id": i, "score": s, "explored": e}
                 for i, s, e in zip(names, theta[picked].round(6).tolist(), flags, strict=True)]
        imps = ctx.imps[picked].tolist() if ctx.imps is not None else []
        ctx.filled = 0
        explored = sum(flags)
        target = k if ctx.channel_pool else min(k, ctx.n_given)
        if len(items) < target and not ctx.channel_pool:
            if picked_cats is None:
                picked_cats = guard.categories_of(rows[picked]).tolist()
            ctx.filled = _fill(ctx, items, imps, picked_cats, explored, budget, target)
            explored = sum(1 for it in items if it["explored"])
        ctx.items = items
        ctx.explored = explored
        ctx.margin = d.margin
        n0 = live.ranker.bandit.n0
        # alpha + beta = n0 + impressions (up to the tiny clamp), so concentration needs no extra pass
        ctx.concentration = n0 + sum(imps) / len(items) if items else n0


def _names(ctx: RecommendCtx, rows: np.ndarray, ids: list[str] | None, picked: np.ndarray) -> list[str]:
    if ids is None:
        item_ids = ctx.live.ranker.bundle.item_ids
        return [item_ids[r] for r in rows[picked].tolist()]
    if ctx.pos is not None:                  # candidates filtered by position (see the guardrails stage)
        picked = ctx.pos[picked]
    return [ids[i] for i in picked.tolist()]


def _fill(ctx: RecommendCtx, items: list[dict], imps: list[float], placed_cats: list[int], explored: int,
          budget: int, target: int) -> int:
    """Append pool items (allowed, not among the candidates) ranked and capped like the rest."""
    live = ctx.live
    ranker = live.ranker
    req = ctx.req
    need = target - len(items)
    pool = live.clean_pool(req.context.channel, req.context.age_verified)
    rows = pool[~np.isin(pool, ctx.rows)]
    if not rows.shape[0]:
        return 0
    post = ranker.posterior(rows, 0, None, req.context, ctx.vec, ranker.counts.get(req.tenant, req.slot))
    theta = ranker.draw(post.alpha, post.beta)
    mean = post.alpha / (post.alpha + post.beta)
    order = np.argsort(-theta, kind="stable")
    pos, exp = live.diversity.select(order.tolist(), live.guard.categories_of(rows), need, ~greedy_mask(mean, need),
                                     budget, prior=placed_cats, prior_explored=explored)
    if not pos:
        return 0
    picked = np.asarray(pos, dtype=np.int64)
    item_ids = ranker.bundle.item_ids
    scores = theta[picked].round(6).tolist()
    for r, s, e in zip(rows[picked].tolist(), scores, exp, strict=True):
        items.append({"item_id": item_ids[r], "score": s, "explored": e})
    if post.imps is not None:
        imps.extend(post.imps[picked].tolist())
    ctx.fill_post = (post.alpha[picked], post.beta[picked])
    return len(pos)
