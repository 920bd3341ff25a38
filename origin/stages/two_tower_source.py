"""The two-tower's candidates (the retrieval bundle's user/session tower over the session's recent items and
the user's purchases, nearest item vectors from the ANN index) together with what the deep ranker was
trained to rank: the user's own past items and the items the ranker bundle's table co-visits with them
(``shared.models.ranker_features.candidates``).

Consent and at least one item the models know (a purchase, or an item of the current session) are needed;
otherwise nothing runs (the other sources answer, and the rank stage uses the edge scorer). The nearest
``limit`` items come from the models' ``VectorIndex`` (HNSW) under the same payload filter as the ANN source
(in stock, the age gate, banned categories), so they are usable, checked against exactly scored sample items
and replaced by an exact scan when the beam missed (``origin.tower_search``). Items added after the export
(``POST /v1/items``, embedded by the item tower) are found the same way; the rank stage ranks them after the
known ones. Recovery rules: the index fails -> exact search over the item vectors with the same filter, the
answer degraded (``two_tower_index_failed``); no index loaded -> exact search (logged at start); the tower
fails -> the other sources answer, degraded (``two_tower_failed``). Score = max(cosine, 0).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from strata.origin.stages.ctx import OriginCtx
from strata.origin.tower_search import TowerSearch
from strata.shared.models.ranker_features import candidates, summarize

logger = logging.getLogger(__name__)


class TwoTowerSource:
    name = "two_tower_source"

    def __init__(self, limit: int = 500, ef: int | None = None, exact: bool = False) -> None:
        self.search = TowerSearch(limit, ef, exact)
        self.failures = 0

    @property
    def index_failures(self) -> int:
        return self.search.index_failures

    def run(self, ctx: OriginCtx) -> None:
        models = ctx.state.models
        profile = ctx.profile
        if models is None or not ctx.oreq.consent or ctx.given or not (profile.purchases or profile.recent):
            return
        now = int(time.time() * 1000)
        h = models.history(profile.purchases, now)
        tower_in = models.tower_input(h, profile.recent)
        if tower_in is None:
            return
        if h is None:
            h = models.no_history(now)
        pl = models.pipeline
        try:
            user = pl.tower.vectors(tower_in)
            if user.shape != (1, pl.item_vectors.shape[1]) or not np.all(np.isfinite(user)):
                raise ValueError(f"user tower returned shape {user.shape} or non-finite values")
        except Exception as exc:
            self.failures += 1
            logger.warning("user tower failed; the other sources answer: %s", exc)
            ctx.degraded = True
            ctx.route_reasons.append("two_tower_failed")
            return
        near = self.search.nearest(ctx, models, user[0])
        top = near.items
        summary = summarize(h, pl.stats)
        ptr, item = candidates(h, summary, pl.stats, top[None, :], n_past=pl.sizes.past, n_covis=pl.sizes.covis,
                               n_popular=0, n_fresh=pl.sizes.fresh)
        ctx.history, ctx.summary, ctx.user_vec = h, summary, user[0]
        sims = pl.item_vectors[item] @ user[0]
        rows = models.row_of_model[item]
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
            if r >= 0:
                ctx.add(self.name, r, max(s, 0.0))
        for r, s in near.cold:             # items added after the export (item tower at POST /v1/items)
            ctx.add(self.name, r, max(s, 0.0))
