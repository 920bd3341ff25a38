"""Scorer: the ranker's click probability over ``shared.features`` rows, plus query relevance.

score = p_click + query_weight * (share of the query's words the item matches). Session similarity
enters the features only with consent. Recovery rule: when the ranker fails, candidates keep their
retrieval order (best source score) and the answer says degraded.
"""

from __future__ import annotations

import logging

import numpy as np

from origin.stages.ctx import OriginCtx
from shared.features import assemble, context_block

logger = logging.getLogger(__name__)


class Rank:
    name = "rank"

    def __init__(self, query_weight: float = 1.0) -> None:
        self.query_weight = query_weight
        self.failures = 0

    def run(self, ctx: OriginCtx) -> None:
        rows = ctx.rows
        if not rows.shape[0]:
            ctx.scores = np.zeros(0, dtype=np.float64)
            return
        state = ctx.state
        cat = state.catalog
        c = ctx.oreq.req.context
        vec = ctx.profile.vec if ctx.oreq.consent else None
        try:
            sims = None if vec is None else cat.vectors[rows] @ vec
            x = assemble(cat.features[rows], context_block(c.channel, c.device, c.hour), sims)
            p = np.asarray(state.ranker.score(x), dtype=np.float64)
            if p.shape != rows.shape or not np.all(np.isfinite(p)):
                raise ValueError(f"ranker returned shape {p.shape} or non-finite scores")
        except Exception as exc:
            self.failures += 1
            logger.warning("ranker failed; keeping retrieval order: %s", exc)
            ctx.degraded = True
            ctx.route_reasons.append("ranker_failed")
            ctx.scores = np.array([ctx.retrieval[r] for r in rows.tolist()], dtype=np.float64)
            return
        if ctx.query_words:
            match = ctx.query_match
            content = np.array([match.get(r, 0.0) for r in rows.tolist()], dtype=np.float64)
            p = p + self.query_weight * content
        ctx.scores = p
