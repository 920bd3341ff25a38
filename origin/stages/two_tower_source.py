"""The two-tower's candidates (the retrieval bundle's user/session tower over the user's purchases, nearest
item vectors by dot product) together with what the deep ranker was trained to rank: the user's own past
items and the items the ranker bundle's table co-visits with them (``shared.ranker_features.candidates``).

Consent and a purchase history the models know are needed; otherwise nothing runs (the other sources
answer, and the rank stage uses the edge scorer). The search is exact over the bundle's item vectors
(numpy, one matrix-vector product: a few hundred microseconds for 12k items); a much larger catalog would
put them in a ``shared.vector_index`` index. Recovery rule: when the tower fails the other sources answer
and the answer says degraded (``two_tower_failed``). Score = max(cosine, 0) (past items: at least 0).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from origin.stages.ctx import OriginCtx
from shared.ranker_features import candidates, summarize, tower_input

logger = logging.getLogger(__name__)


class TwoTowerSource:
    name = "two_tower_source"

    def __init__(self) -> None:
        self.failures = 0

    def run(self, ctx: OriginCtx) -> None:
        models = ctx.state.models
        if models is None or not ctx.oreq.consent or ctx.oreq.item_ids or not ctx.profile.purchases:
            return
        h = models.history(ctx.profile.purchases, int(time.time() * 1000))
        if h is None:
            return
        pl = models.pipeline
        try:
            user = pl.tower.vectors(tower_input(h, pl.tower.history_len, pl.stats.n_items))
            if user.shape != (1, pl.item_vectors.shape[1]) or not np.all(np.isfinite(user)):
                raise ValueError(f"user tower returned shape {user.shape} or non-finite values")
        except Exception as exc:
            self.failures += 1
            logger.warning("user tower failed; the other sources answer: %s", exc)
            ctx.degraded = True
            ctx.route_reasons.append("two_tower_failed")
            return
        summary = summarize(h, pl.stats)
        top = pl.tower_top(user, pl.sizes.tower)
        ptr, item = candidates(h, summary, pl.stats, top, n_past=pl.sizes.past, n_covis=pl.sizes.covis,
                               n_popular=0)
        ctx.history, ctx.summary, ctx.user_vec = h, summary, user[0]
        sims = pl.item_vectors[item] @ user[0]
        rows = models.row_of_model[item]
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
            if r >= 0:
                ctx.add(self.name, r, max(s, 0.0))
