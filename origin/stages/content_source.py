"""Candidates by what the query says (cold start, stated needs): nearest item texts in meaning when the
registry has a text encoder (``origin.text_search``), else the query's words matched against titles and
categories. Without a query, the user's stated tastes (a ``preference`` event's categories and brands,
read with consent) stand in for one, and rank like one.

Semantic: the query is embedded (all-MiniLM-L6-v2) and the text index returns the nearest item texts under
the same payload filter as the ANN source (in stock, the age gate, banned categories); score = cosine,
clipped at 0. Lexical: score = share of the query's distinct words matched, ties broken by popularity.
Either way the best items' mean interaction vector becomes the ANN query when there is no session vector.
Recovery rule: when the text index fails, the request falls back to the lexical match and says degraded.
"""

from __future__ import annotations

import logging

import numpy as np

from strata.origin.catalog import words
from strata.origin.retrieval import source_filter
from strata.origin.stages.ctx import OriginCtx
from strata.shared.errors import StrataError

logger = logging.getLogger(__name__)


class ContentSource:
    name = "content_source"

    def __init__(self, limit: int = 200, seed_items: int = 20) -> None:
        self.limit = limit
        self.seed_items = seed_items
        self.failures = 0

    def run(self, ctx: OriginCtx) -> None:
        if ctx.given:                 # given items or candidates: no retrieval
            return
        text = ctx.state.text
        query = ctx.oreq.query
        if not query and ctx.oreq.consent and ctx.profile.preferences:
            query = " ".join(ctx.profile.preferences)
            ctx.query_words = words(query)
        if query and text is not None:
            try:
                best = self._semantic(ctx, text.embed(query))
            except StrataError as exc:
                self.failures += 1
                logger.warning("text search failed; matching words instead: %s", exc.reason)
                ctx.degraded = True
                ctx.route_reasons.append("text_search_failed")
                best = self._lexical(ctx)
        else:
            best = self._lexical(ctx)
        if best:
            ctx.seeds = best[:self.seed_items]
            self._seed_ann(ctx, best)

    def _semantic(self, ctx: OriginCtx, vec: np.ndarray) -> list[int]:
        state = ctx.state
        hits = state.text.search(vec, self.limit, source_filter(state, ctx.oreq.req.context.age_verified))
        row = state.catalog.row
        best = []
        for h in hits:
            r = row.get(h.key)
            if r is not None:
                s = max(h.score, 0.0)
                ctx.add(self.name, r, s)
                ctx.query_match[r] = s
                best.append(r)
        return best

    def _lexical(self, ctx: OriginCtx) -> list[int]:
        qw = ctx.query_words
        if not qw:
            return []
        cat = ctx.state.catalog
        hits = cat.text_matches(qw)
        if not hits:
            return []
        n_words = len(set(qw))
        rows = np.fromiter(hits.keys(), dtype=np.int64, count=len(hits))
        counts = np.fromiter(hits.values(), dtype=np.int64, count=len(hits))
        order = np.lexsort((rows, -cat.popularity[rows], -counts))[:self.limit]
        best = list(zip(rows[order].tolist(), counts[order].tolist(), strict=True))
        for row, n in best:
            ctx.add(self.name, row, n / n_words)
            ctx.query_match[row] = n / n_words
        return [r for r, _ in best]

    def _seed_ann(self, ctx: OriginCtx, best: list[int]) -> None:
        vecs = ctx.state.catalog.vectors[np.array(best[:self.seed_items], dtype=np.int64)]
        vecs = vecs[np.any(vecs != 0, axis=1)]
        if vecs.shape[0]:
            v = vecs.mean(axis=0)
            norm = float(np.linalg.norm(v))
            if norm > 0:
                ctx.query_vec = (v / norm).astype(np.float32)
