"""UP-CF@r (Faggioli, Polato, Aiolli, UMAP 2020): recency-aware user popularity with user-based CF.

The recency-aware user popularity of item i for customer u is the share of u's r most recent baskets that
contain i: p_u(i) = |{b in the last min(r, n_u) baskets : i in b}| / min(r, n_u) (r = 0: every basket).
Customers are compared by the asymmetric cosine of their item sets (everything they ever bought):

    sim(u, v) = |I_u & I_v| / (|I_u| ** alpha * |I_v| ** (1 - alpha))

and an item's score is sum over customers v of sim(u, v) ** q * p_v(i), u itself included with sim 1 (the
authors' formulation: the customer's own popularity, plus the neighbours' at locality q).

Protocol: a query's item set and popularity come from its history at query time; the other customers are
the training customers (their training baskets), the query's own training row replaced by the self term.
An empty history scores nothing, so popularity answers, as for every model.
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
from strata.shared.models.next_basket import basket_ordinals, recent_share_weights

GRID: dict[str, tuple[Any, ...]] = {
    "r": (1, 3, 5, 10, 25, 0),
    "alpha": (0.0, 0.25, 0.5, 0.75, 1.0),
    "q": (1.0, 5.0, 10.0, 50.0, 100.0),
}


@dataclass(frozen=True, slots=True)
class UPCFParams:
    r: int = 10  # recency window in baskets (0: all of them)
    alpha: float = 0.75  # asymmetry of the cosine
    q: float = 5.0  # locality: the similarity's exponent


def recency_popularity(row: np.ndarray, item: np.ndarray, invoice: np.ndarray, n_rows: int, n_items: int,
                       r: int) -> sparse.csr_matrix:
    """float64 [n_rows, n_items] p_u(i) of distinct (invoice, item) pairs sorted by row, then time."""
    weight = recent_share_weights(*basket_ordinals(row, invoice), r)
    out = sparse.csr_matrix((weight, (row, item)), shape=(n_rows, n_items))
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def item_sets(row: np.ndarray, item: np.ndarray, n_rows: int, n_items: int) -> sparse.csr_matrix:
    """float64 [n_rows, n_items] 1 where the row ever bought the item."""
    out = sparse.csr_matrix((np.ones(row.size), (row, item)), shape=(n_rows, n_items))
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


class UPCF:
    name = "upcf"

    def __init__(self, params: UPCFParams | None = None, grid: dict[str, tuple[Any, ...]] | None = None) -> None:
        self.params = params or UPCFParams()
        self.grid = GRID if grid is None else grid
        self.popularity: sparse.csr_matrix | None = None  # [n_customers, n_items] p_v from training
        self.sets: sparse.csr_matrix | None = None  # [n_customers, n_items] binary item sets
        self.ties: TieBreak | None = None

    def fit(self, train: Baskets) -> None:
        n_items = train.catalog.n_items
        self.popularity = recency_popularity(train.customer, train.item, train.invoice, train.n_customers,
                                             n_items, self.params.r)
        self.sets = item_sets(train.customer, train.item, train.n_customers, n_items)
        self.ties = TieBreak(train.popularity())

    def scores(self, part: Queries) -> np.ndarray:
        assert self.popularity is not None and self.sets is not None, "fit first"
        p = self.params
        rows, pos = part.history_positions()
        log = part.log
        n_items = log.catalog.n_items
        own_pop = recency_popularity(rows, log.item[pos], log.invoice[pos], len(part), n_items, p.r)
        own_set = item_sets(rows, log.item[pos], len(part), n_items)
        sim = asymmetric_cosine(own_set, self.sets, p.alpha)
        inside = part.customer < sim.shape[1]
        sim[np.flatnonzero(inside), part.customer[inside]] = 0.0  # the self term below replaces the own row
        weights = sim ** p.q
        return own_pop.toarray() + (self.popularity.T @ weights.T).T

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.ties is not None, "fit first"
        return rank_in_chunks(queries, k, self.scores, self.ties)

    def tune(self, train: Baskets, validation: Queries) -> dict[str, Any]:
        """Coordinate search on validation NDCG@10; keeps the best parameters for the next ``fit``."""
        return tune_on_validation(self, train, validation)


def asymmetric_cosine(a: sparse.csr_matrix, b: sparse.csr_matrix, alpha: float) -> np.ndarray:
    """float64 [rows of a, rows of b]: |A & B| / (|A| ** alpha * |B| ** (1 - alpha)), 0 where either is empty."""
    inter = (a @ b.T).toarray()
    size_a = np.diff(a.indptr).astype(np.float64)
    size_b = np.diff(b.indptr).astype(np.float64)
    denom = (size_a ** alpha)[:, None] * (size_b ** (1.0 - alpha))[None, :]
    return np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
