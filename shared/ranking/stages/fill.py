"""Make the answer as long as it should be (``ctx.target``), never breaking a rule silently.

1. When the candidates fall short (the guardrails removed some, or the diversity cap skipped some), the
   answer is filled from the channel's pool: items the guardrails allow and that were not candidates,
   ranked the same way (model prior + the slot's counts, one Thompson draw each) under the same caps,
   placed after the candidates' items (``filled_from_pool``).
2. When even that cannot reach the target under the diversity cap (the answer asks for more than
   ``max_per_category`` x the categories available), the cap is relaxed one step at a time over what is
   left, best first (``DiversitySelector.relax``), and the answer says ``diversity_cap_relaxed``.
"""

from __future__ import annotations

import numpy as np

from strata.shared.ranking.bandit import greedy_mask
from strata.shared.ranking.guardrails import DIVERSITY_RELAXED
from strata.shared.ranking.ranker import Posterior
from strata.shared.ranking.stages.ctx import RankCtx
from strata.shared.ranking.stages.select import item_names

FILLED = "filled_from_pool"


def fill_rows(ctx: RankCtx) -> np.ndarray:
    """The pool rows a fill may take: allowed for this request and not among the candidates."""
    pool = ctx.model.pool(ctx.req.context.channel, ctx.req.context.age_verified)
    return pool[~np.isin(pool, ctx.rows)]


class _Pool:
    """The fill's ranked pool: rows, their posterior and draws, and what was taken."""

    __slots__ = ("rows", "post", "theta", "order", "taken")

    def __init__(self, rows: np.ndarray, post: Posterior, theta: np.ndarray) -> None:
        self.rows = rows
        self.post = post
        self.theta = theta
        self.order: list[int] = np.argsort(-theta, kind="stable").tolist()
        self.taken: set[int] = set()


class Fill:
    name = "fill"

    def run(self, ctx: RankCtx) -> None:
        if ctx.target <= len(ctx.items):
            return
        cats = ctx.picked_cats       # category codes of the answer so far (extended as items are placed)
        placed = ctx.model.guard.categories_of(ctx.rows[ctx.picked]).tolist() if cats is None else list(cats)
        alphas: list[np.ndarray] = []
        betas: list[np.ndarray] = []
        priors: list[np.ndarray] = []
        pool = None
        if not ctx.channel_pool:
            pool = self._from_pool(ctx, placed, alphas, betas, priors)
        if ctx.target > len(ctx.items):
            self._relaxed(ctx, pool, placed, alphas, betas, priors)
        if alphas:
            ctx.fill_post = (np.concatenate(alphas), np.concatenate(betas), np.concatenate(priors))

    @staticmethod
    def _from_pool(ctx: RankCtx, placed: list[int], alphas: list, betas: list, priors: list) -> _Pool | None:
        rows = fill_rows(ctx)
        if not rows.shape[0]:
            return None
        model = ctx.model
        ranker = model.ranker
        counts = ctx.counts.of(rows, 0, None)
        clicks, imps, expected = (None, None, None) if counts is None else counts
        post = ranker.posterior(rows, 0, ctx.req.context, ctx.vec, clicks, imps, expected)
        pool = _Pool(rows, post, ranker.draw(post.alpha, post.beta))
        need = ctx.target - len(ctx.items)
        pos, explored = model.diversity.select(
            pool.order, model.guard.categories_of(rows), need, ~greedy_mask(post.alpha / (post.alpha + post.beta), need),
            ranker.bandit.budget_slots(ctx.req.k), prior=placed, prior_explored=ctx.explored)
        if pos:
            picked = np.asarray(pos, dtype=np.int64)
            _append_pool(ctx, pool, picked, explored)
            alphas.append(post.alpha[picked])
            betas.append(post.beta[picked])
            priors.append(post.p[picked])
            placed += model.guard.categories_of(rows[picked]).tolist()
            pool.taken.update(pos)
            ctx.explored += sum(explored)
            ctx.reasons.append(FILLED)
        return pool

    @staticmethod
    def _relaxed(ctx: RankCtx, pool: _Pool | None, placed: list[int], alphas: list, betas: list,
                 priors: list) -> None:
        """What is left, best first (the candidates the cap skipped, then the pool's), under a raised cap."""
        guard = ctx.model.guard
        taken = set(ctx.picked.tolist())
        order = [p for p in np.argsort(-ctx.theta, kind="stable").tolist() if p not in taken]
        cats = guard.categories_of(ctx.rows)
        n_cand = ctx.rows.shape[0]
        if pool is not None:
            order += [n_cand + p for p in pool.order if p not in pool.taken]
            cats = np.concatenate((cats, guard.categories_of(pool.rows)))
        diversity = ctx.model.diversity
        more = diversity.relax(order, cats, ctx.target - len(ctx.items), prior=placed)
        if not more:
            return
        for p in more:
            if p < n_cand:
                (name,) = item_names(ctx, np.array([p], dtype=np.int64))
                ctx.items.append({"item_id": name, "score": round(float(ctx.theta[p]), 6), "explored": False})
                alphas.append(ctx.alpha[p:p + 1])
                betas.append(ctx.beta[p:p + 1])
                priors.append(ctx.prior[p:p + 1])
            else:
                assert pool is not None                  # only the pool's positions come after the candidates'
                q = np.array([p - n_cand], dtype=np.int64)
                _append_pool(ctx, pool, q, [False])
                alphas.append(pool.post.alpha[q])
                betas.append(pool.post.beta[q])
                priors.append(pool.post.p[q])
        placed += cats[more].tolist()
        if not diversity.satisfied(placed):     # a sliding window may still hold
            ctx.relaxed = True
            ctx.reasons.append(DIVERSITY_RELAXED)


def _append_pool(ctx: RankCtx, pool: _Pool, picked: np.ndarray, explored: list[bool]) -> None:
    item_ids = ctx.model.bundle.item_ids
    for r, s, e in zip(pool.rows[picked].tolist(), pool.theta[picked].round(6).tolist(), explored, strict=True):
        ctx.items.append({"item_id": item_ids[r], "score": s, "explored": e})
    ctx.filled += len(explored)
