"""Repeat purchases: the customer's own items, most often bought first, then most recently bought.

In retail (and for this wholesaler-heavy shop especially) a large share of the next basket is items
bought before, so this is the baseline a personal model must beat on returning customers. Items the
customer never bought follow in popularity order, so the list is always full.
"""

from __future__ import annotations

import numpy as np

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.protocol import TieBreak, rank_in_chunks
from strata.model_export.evaluation.split import Queries


class RepeatPurchases:
    name = "repeat"

    def __init__(self) -> None:
        self.ties: TieBreak | None = None

    def fit(self, train: Baskets) -> None:
        self.ties = TieBreak(train.popularity())

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.ties is not None, "fit first"
        return rank_in_chunks(queries, k, repeat_scores, self.ties)


def repeat_scores(queries: Queries) -> np.ndarray:
    """invoices-with-item + recency in [0, 1): frequency decides, the latest purchase breaks ties."""
    rows, pos = queries.history_positions()
    shape = (len(queries), queries.log.catalog.n_items)
    scores = queries.history_counts().toarray()
    if rows.size:
        t0 = int(queries.log.ts_ms.min())
        span = float(int(queries.log.ts_ms.max()) - t0 + 1)
        recency = (queries.log.ts_ms[pos] - t0) / span  # in [0, 1)
        last = np.zeros(shape)
        np.maximum.at(last, (rows, queries.log.item[pos]), recency)
        scores += last
    return scores
