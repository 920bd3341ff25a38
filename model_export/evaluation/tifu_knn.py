"""TIFU-KNN (Hu et al., SIGIR 2020): time-decayed personal item frequency, blended with the nearest customers'.

A customer's baskets b_1..b_n (binary item vectors, oldest first) are split into G = min(m, n) groups of
consecutive baskets (``shared.models.next_basket.tifu_weights``, which the deep ranker's features use too).
A group's vector is the mean of its baskets, each weighted by rb ** (baskets after it in its group); the
customer's vector is the mean of the group vectors, each weighted by rg ** (groups after it). An item's
score is

    alpha * u[item] + (1 - alpha) * (mean over the k nearest training customers v of v[item])

with the neighbours by Euclidean distance between the vectors. The paper's m is the number of groups (the
``group_size`` argument of the authors' code). ``within="history"`` is that code's variant, where rb counts
the baskets to the end of the whole history rather than of the group; the grid tries both.

Protocol: a query's vector comes from its history at query time; the neighbours are the training customers
(vectors from their training baskets) except the customer itself, whose own history is the personal term; an
empty history scores nothing, so popularity answers, as for every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.protocol import TieBreak, rank_in_chunks
from strata.model_export.evaluation.split import Queries
from strata.model_export.evaluation.tuning import tune_on_validation
from strata.shared.models.next_basket import Within, basket_ordinals, tifu_weights

GRID: dict[str, tuple[Any, ...]] = {
    "m": (1, 3, 7, 15),
    "rb": (0.5, 0.7, 0.9, 1.0),
    "rg": (0.5, 0.7, 0.9, 1.0),
    "k": (25, 100, 300, 900),
    "alpha": (0.3, 0.5, 0.7, 0.9),
    "within": ("group", "history"),
}


@dataclass(frozen=True, slots=True)
class TIFUParams:
    m: int = 7  # groups of consecutive baskets
    rb: float = 0.9  # within-group decay
    rg: float = 0.7  # group decay
    k: int = 300  # neighbours
    alpha: float = 0.7  # weight of the customer's own vector
    within: Within = "group"


def tifu_vectors(row: np.ndarray, item: np.ndarray, invoice: np.ndarray, n_rows: int, n_items: int,
                 params: TIFUParams) -> sparse.csr_matrix:
    """float64 [n_rows, n_items] TIFU vectors of distinct (invoice, item) pairs sorted by row, then time."""
    ordinal, count = basket_ordinals(row, invoice)
    weight = tifu_weights(ordinal, count, params.m, params.rb, params.rg, params.within)
    out = sparse.csr_matrix((weight, (row, item)), shape=(n_rows, n_items))
    out.sum_duplicates()
    return out


def query_vectors(queries: Queries, params: TIFUParams) -> sparse.csr_matrix:
    rows, pos = queries.history_positions()
    log = queries.log
    return tifu_vectors(rows, log.item[pos], log.invoice[pos], len(queries), log.catalog.n_items, params)


class TIFUKNN:
    name = "tifu_knn"

    def __init__(self, params: TIFUParams | None = None, grid: dict[str, tuple[Any, ...]] | None = None) -> None:
        self.params = params or TIFUParams()
        self.grid = GRID if grid is None else grid
        self.vectors: sparse.csr_matrix | None = None  # [n_customers, n_items] from the training baskets
        self.candidates: np.ndarray | None = None  # bool per customer: has training baskets
        self.ties: TieBreak | None = None

    def fit(self, train: Baskets) -> None:
        self.vectors = tifu_vectors(train.customer, train.item, train.invoice, train.n_customers,
                                    train.catalog.n_items, self.params)
        self.candidates = np.bincount(train.customer, minlength=train.n_customers) > 0
        self.ties = TieBreak(train.popularity())

    def scores(self, part: Queries) -> np.ndarray:
        """float64 [len(part), n_items]: the blend of the module doc (zero rows for empty histories)."""
        assert self.vectors is not None and self.candidates is not None, "fit first"
        p = self.params
        own = query_vectors(part, p)
        out = p.alpha * own.toarray()
        has = np.diff(own.indptr) > 0
        if not has.any() or not self.candidates.any():
            return out
        rows = np.flatnonzero(has)
        nbr = neighbour_mean(own[rows], self.vectors, self.candidates, part.customer[rows], p.k)
        out[rows] += (1.0 - p.alpha) * nbr
        return out

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.ties is not None, "fit first"
        return rank_in_chunks(queries, k, self.scores, self.ties)

    def tune(self, train: Baskets, validation: Queries) -> dict[str, Any]:
        """Coordinate search on validation NDCG@10; keeps the best parameters for the next ``fit``."""
        return tune_on_validation(self, train, validation)


def neighbour_mean(own: sparse.csr_matrix, vectors: sparse.csr_matrix, candidates: np.ndarray,
                   customer: np.ndarray, k: int) -> np.ndarray:
    """float64 [len(own), n_items]: mean vector of each row's k nearest candidate customers (Euclidean),
    the row's own customer excluded."""
    cross = (own @ vectors.T).toarray()
    d2 = np.asarray(own.multiply(own).sum(axis=1)) + np.asarray(vectors.multiply(vectors).sum(axis=1)).T - 2 * cross
    d2[:, ~candidates] = np.inf
    rows = np.arange(own.shape[0])
    inside = customer < candidates.size
    d2[rows[inside], customer[inside]] = np.inf
    kk = max(1, min(k, int(candidates.sum()) - 1))
    nearest = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
    weight = np.where(np.isfinite(np.take_along_axis(d2, nearest, axis=1)), 1.0 / kk, 0.0)  # tiny logs only
    pick = sparse.csr_matrix((weight.ravel(), (np.repeat(rows, kk), nearest.ravel())),
                             shape=(own.shape[0], vectors.shape[0]))
    return (pick @ vectors).toarray()
