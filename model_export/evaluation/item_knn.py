"""Item-to-item kNN: items whose buyers overlap with the buyers of what this customer bought.

Similarity is the cosine between items' columns of the binary customer x item training matrix, kept
for each item's ``neighbours`` most similar items (chosen on the validation split from ``GRID``). A history item's weight is log1p(invoices with it),
so repeated purchases count more without drowning the rest. An item's similarity to itself (1) is kept:
repeat purchases are a large share of retail baskets and a kNN that could never recommend them would be
a straw man. An empty history scores nothing and falls back to popularity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.metrics import ndcg_at
from strata.model_export.evaluation.protocol import TieBreak, rank_in_chunks
from strata.model_export.evaluation.split import Queries
from strata.model_export.evaluation.tuning import coordinate_search

GRID: dict[str, tuple[Any, ...]] = {"neighbours": (10, 25, 50, 100, 200, 400, 800, 1600)}


@dataclass(frozen=True, slots=True)
class KNNParams:
    neighbours: int = 200


class ItemKNN:
    name = "item_knn"

    def __init__(self, neighbours: int = 200, grid: dict[str, tuple[Any, ...]] | None = None) -> None:
        self.neighbours = neighbours
        self.grid = GRID if grid is None else grid
        self.similarity: np.ndarray | None = None  # float64 [n_items, n_items]
        self.ties: TieBreak | None = None

    def tune(self, train: Baskets, validation: Queries) -> dict[str, Any]:
        """Neighbourhood size by validation NDCG@10; kept for the next ``fit``."""
        if len(validation) == 0 or len(train) == 0:
            return {"params": {"neighbours": self.neighbours}, "validation_ndcg@10": None, "trials": [],
                    "note": "no validation invoices: default parameters"}

        def score(params: KNNParams) -> float:
            self.neighbours = params.neighbours
            self.fit(train)
            return ndcg_at(self.recommend(validation, 10), validation.relevant, 10)

        found = coordinate_search(score, KNNParams(self.neighbours), self.grid, label=self.name)
        self.neighbours = found["best"].neighbours
        return {"params": found["params"], "validation_ndcg@10": found["score"], "search": "grid",
                "objective": "validation ndcg@10", "grid": {k: list(v) for k, v in self.grid.items()},
                "trials": found["trials"]}

    def fit(self, train: Baskets) -> None:
        n_items = train.catalog.n_items
        self.ties = TieBreak(train.popularity())
        bought = sparse.csr_matrix((np.ones(len(train)), (train.customer, train.item)),
                                   shape=(train.n_customers, n_items))
        bought.data[:] = 1.0  # duplicates were summed on construction; buyers, not purchases
        norms = np.sqrt(np.asarray(bought.sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        unit = bought @ sparse.diags(1.0 / norms)
        self.similarity = prune(np.asarray((unit.T @ unit).todense()), self.neighbours)

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.similarity is not None and self.ties is not None, "fit first"
        similarity = self.similarity

        def score(part: Queries) -> np.ndarray:
            weights = part.history_counts()
            weights.data = np.log1p(weights.data)
            return np.asarray(weights @ similarity)

        return rank_in_chunks(queries, k, score, self.ties)


def prune(similarity: np.ndarray, neighbours: int) -> np.ndarray:
    """Keep each row's ``neighbours`` largest entries (the diagonal always survives), zero the rest."""
    n = similarity.shape[0]
    if neighbours >= n:
        return similarity
    keep = np.argpartition(-similarity, neighbours, axis=1)[:, :neighbours]
    out = np.zeros_like(similarity)
    rows = np.arange(n)[:, None]
    out[rows, keep] = similarity[rows, keep]
    out[np.arange(n), np.arange(n)] = similarity[np.arange(n), np.arange(n)]
    return out
