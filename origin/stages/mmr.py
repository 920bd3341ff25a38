"""Selector: maximal marginal relevance over the item vectors, so the top of the list is not k near-twins.

Greedy over the best ``pool`` candidates by score: next = argmax lambda * score - (1 - lambda) * max
cosine to the items already placed (scores min-max scaled to [0, 1] first). The rest follow by score.
Writes ``ctx.order`` (positions into ``ctx.rows``).
"""

from __future__ import annotations

import numpy as np

from strata.origin.stages.ctx import OriginCtx


class MmrSelector:
    name = "mmr"

    def __init__(self, lam: float = 0.7, pool: int = 100) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError("mmr lambda must be in [0, 1]")
        self.lam = lam
        self.pool = pool

    def run(self, ctx: OriginCtx) -> None:
        scores = ctx.scores
        by_score = np.argsort(-scores, kind="stable")
        n = min(self.pool, by_score.shape[0], 4 * ctx.oreq.req.k)
        if n <= 1 or self.lam >= 1.0:
            ctx.order = by_score
            return
        head = by_score[:n]
        s = scores[head]
        span = float(s.max() - s.min())
        rel = (s - s.min()) / span if span > 0 else np.ones(n)
        v = ctx.state.catalog.vectors[ctx.rows[head]]
        sim = v @ v.T
        chosen = [0]
        max_sim = sim[0].copy()
        left = np.ones(n, dtype=bool)
        left[0] = False
        for _ in range(n - 1):
            gain = np.where(left, self.lam * rel - (1.0 - self.lam) * max_sim, -np.inf)
            j = int(np.argmax(gain))
            chosen.append(j)
            left[j] = False
            np.maximum(max_sim, sim[j], out=max_sim)
        ctx.order = np.concatenate([head[chosen], by_score[n:]])
