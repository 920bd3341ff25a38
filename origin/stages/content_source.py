"""Candidates whose title or category contains the query's words (cold start, stated needs).

Lexical until the text encoder lands: score = share of the query's distinct words matched, ties broken
by popularity. The matched items' mean vector becomes the ANN query when there is no session vector.
"""

from __future__ import annotations

import numpy as np

from origin.stages.ctx import OriginCtx


class ContentSource:
    name = "content_source"

    def __init__(self, limit: int = 200, seed_items: int = 20) -> None:
        self.limit = limit
        self.seed_items = seed_items

    def run(self, ctx: OriginCtx) -> None:
        if ctx.oreq.item_ids:         # /v1/explain of given items: no retrieval
            return
        qw = ctx.query_words
        if not qw:
            return
        cat = ctx.state.catalog
        hits = cat.text_matches(qw)
        if not hits:
            return
        n_words = len(set(qw))
        rows = np.fromiter(hits.keys(), dtype=np.int64, count=len(hits))
        counts = np.fromiter(hits.values(), dtype=np.int64, count=len(hits))
        order = np.lexsort((rows, -cat.popularity[rows], -counts))[:self.limit]
        best = list(zip(rows[order].tolist(), counts[order].tolist(), strict=True))
        for row, n in best:
            ctx.add(self.name, row, n / n_words)
            ctx.query_match[row] = n / n_words
        seeds = np.array([r for r, _ in best[:self.seed_items]], dtype=np.int64)
        vecs = cat.vectors[seeds]
        vecs = vecs[np.any(vecs != 0, axis=1)]
        if vecs.shape[0]:
            v = vecs.mean(axis=0)
            norm = float(np.linalg.norm(v))
            if norm > 0:
                ctx.query_vec = (v / norm).astype(np.float32)
