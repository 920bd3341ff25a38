"""The two-tower's candidates (the retrieval bundle's user/session tower over the session's recent items and
the user's purchases, nearest item vectors from the ANN index) together with what the deep ranker was
trained to rank: the user's own past items and the items the ranker bundle's table co-visits with them
(``shared.ranker_features.candidates``).

Consent and at least one item the models know (a purchase, or an item of the current session) are needed;
otherwise nothing runs (the other sources answer, and the rank stage uses the edge scorer). The nearest
``limit`` items come from the models' ``VectorIndex`` (HNSW) under the same payload filter as the ANN source
(in stock, the age gate, banned categories), so they are usable. Recovery rules: the index fails -> exact
search over the bundle's item vectors with the same filter, the answer degraded (``two_tower_index_failed``);
no index loaded -> exact search (logged at start); the tower fails -> the other sources answer, degraded
(``two_tower_failed``). Score = max(cosine, 0).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from origin.models import OriginModels
from origin.retrieval import source_filter
from origin.stages.ctx import OriginCtx
from shared.errors import StrataError
from shared.ranker_features import candidates, summarize

logger = logging.getLogger(__name__)


class TwoTowerSource:
    name = "two_tower_source"

    def __init__(self, limit: int = 500, ef: int | None = None, exact: bool = False) -> None:
        self.limit = limit
        self.ef = ef
        self.exact = exact
        self.failures = 0
        self.index_failures = 0

    def run(self, ctx: OriginCtx) -> None:
        models = ctx.state.models
        profile = ctx.profile
        if models is None or not ctx.oreq.consent or ctx.oreq.item_ids or not (profile.purchases or profile.recent):
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
        top = self._nearest(ctx, models, user[0])
        summary = summarize(h, pl.stats)
        ptr, item = candidates(h, summary, pl.stats, top[None, :], n_past=pl.sizes.past, n_covis=pl.sizes.covis,
                               n_popular=0)
        ctx.history, ctx.summary, ctx.user_vec = h, summary, user[0]
        sims = pl.item_vectors[item] @ user[0]
        rows = models.row_of_model[item]
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
            if r >= 0:
                ctx.add(self.name, r, max(s, 0.0))

    def _nearest(self, ctx: OriginCtx, models: OriginModels, user: np.ndarray) -> np.ndarray:
        """Model indices of the ``limit`` nearest usable items: ANN, else exact."""
        age_ok = ctx.oreq.req.context.age_verified
        if models.index is not None:
            try:
                hits = models.index.search(user, self.limit, source_filter(ctx.state, age_ok), ef=self.ef,
                                           exact=self.exact)
                top = models.model_of([h.key for h in hits])
                return top[top >= 0]
            except StrataError as exc:
                self.index_failures += 1
                logger.warning("two-tower index failed; exact search instead: %s", exc.reason)
                ctx.degraded = True
                ctx.route_reasons.append("two_tower_index_failed")
        return exact_nearest(ctx, models, user, self.limit)


def exact_nearest(ctx: OriginCtx, models: OriginModels, user: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` nearest model items by dot product among those the index filter would let through (in the
    catalog, in stock, passing the guardrails), best first."""
    state = ctx.state
    rows = models.row_of_model
    known = np.flatnonzero(rows >= 0)
    kept = state.guard.filter(rows[known], ctx.oreq.req.context.age_verified).kept
    usable = known[kept]
    usable = usable[state.catalog.stock[rows[usable]] > 0]
    if not usable.size:
        return usable
    sims = models.pipeline.item_vectors[usable] @ user
    n = min(n, usable.size)
    top = np.argpartition(-sims, n - 1)[:n] if n < usable.size else np.arange(usable.size)
    return usable[top[np.argsort(-sims[top], kind="stable")]]
