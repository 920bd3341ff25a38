"""Scorer: the deep ranker (with consent and a history the models know: purchases and the session's recent
items) or the edge scorer's click probability over ``shared.ranking.features`` rows, plus query relevance.

Deep ranker (``shared.models.retrieval_ranker`` / ``shared.models.ranker_features``, exactly what offline evaluation
serves): repeat and recency from the user's purchases, co-visitation, popularity, the two-tower score,
price, category share, title-text affinity with the history. Its listwise score is squashed by a sigmoid (monotone) so that query relevance
adds on the same bounded scale. Items the models do not know (added after the export) rank after every
known one, in their retrieval order: score = lowest known score x retrieval score.

Otherwise: score = p_click of the edge scorer. Session similarity enters its features only with consent.

Either way, score += query_weight * (share of the query's words the item matches).

Recovery rules: deep ranker fails -> the registry's previous ranker version -> two-tower (retrieval) order,
the answer degraded with ``ranker_failed`` and ``ranker_previous_version`` or ``retrieval_order``; a
current ranker that could not even be loaded is served by the previous version (``ranker_previous_version``
on every answer it ranks). Edge scorer fails -> retrieval order (best source score), ``ranker_failed``.
"""

from __future__ import annotations

import logging

import numpy as np

from strata.origin.models import OriginModels
from strata.origin.stages.ctx import OriginCtx
from strata.shared.models.ranker_features import Histories, HistorySummary, ranker_rows
from strata.shared.ranking.features import assemble, context_block

logger = logging.getLogger(__name__)


class Rank:
    name = "rank"

    def __init__(self, query_weight: float = 1.0) -> None:
        self.query_weight = query_weight
        self.failures = 0
        self.scored_by: dict[str, int] = {}   # "ranker" | "previous_ranker" | "retrieval_order" | "edge_scorer"

    def run(self, ctx: OriginCtx) -> None:
        rows = ctx.rows
        if not rows.shape[0]:
            ctx.scores = np.zeros(0, dtype=np.float64)
            return
        models = ctx.state.models
        history, summary, user_vec = ctx.history, ctx.summary, ctx.user_vec     # two_tower_source writes all three
        p: np.ndarray | None
        if models is not None and history is not None and summary is not None and user_vec is not None \
                and ctx.oreq.consent:
            p = self._deep(ctx, rows, models, history, summary, user_vec)
        else:
            p = self._edge(ctx, rows)
            if p is None:
                return
        if ctx.query_words:
            match = ctx.query_match
            content = np.array([match.get(r, 0.0) for r in rows.tolist()], dtype=np.float64)
            p = p + self.query_weight * content
        ctx.scores = p

    def _count(self, by: str) -> None:
        self.scored_by[by] = self.scored_by.get(by, 0) + 1

    def _deep(self, ctx: OriginCtx, rows: np.ndarray, models: OriginModels, history: Histories,
              summary: HistorySummary, user_vec: np.ndarray) -> np.ndarray:
        pl = models.pipeline
        midx = models.model_index(ctx.state.catalog, rows)
        known = midx >= 0
        items = midx[known]
        p = np.zeros(rows.shape[0], dtype=np.float64)
        floor = 0.0
        if items.size:
            tower = (pl.item_vectors[items] @ user_vec).astype(np.float32)
            x = ranker_rows(history, summary, pl.stats, np.array([0, items.size], dtype=np.int64), items,
                            tower)
            score, by = pl.score_rows(x, tower)
            self._count(by)
            s = score.astype(np.float64)
            s = (s + 1.0) / 2.0 if by == "retrieval_order" else 1.0 / (1.0 + np.exp(-s))
            p[known] = s
            floor = float(s.min())
            if by != "ranker":
                self.failures += 1
                ctx.degraded = True
                ctx.route_reasons += ["ranker_failed",
                                      "ranker_previous_version" if by == "previous_ranker" else "retrieval_order"]
        if models.fallback is not None and "ranker_previous_version" not in ctx.route_reasons:
            ctx.degraded = True
            ctx.route_reasons.append("ranker_previous_version")
        if not known.all():
            retrieval = np.array([ctx.retrieval[r] for r in rows[~known].tolist()], dtype=np.float64)
            p[~known] = floor * retrieval
        return p

    def _edge(self, ctx: OriginCtx, rows: np.ndarray) -> np.ndarray | None:
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
            return None
        self._count("edge_scorer")
        return p
