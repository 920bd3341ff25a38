"""Ranking metrics over top-K lists, per query, then averaged per segment.

Relevance is binary (an item is in the invoice or not). Definitions, for one query with relevant set R
and list L (distinct items, best first):
- recall@K = |L[:K] & R| / |R|
- ndcg@10 = sum over hits at 0-based rank r < 10 of 1/log2(r+2), divided by the same sum for a perfect
  list (min(|R|, 10) hits at the top)
- mrr = 1/(rank+1) of the first hit in the list (the list is ``K_MAX`` = 50 long; no hit gives 0)
Over the lists of a segment, at ``LIST_K`` = 10 (what a page shows):
- coverage = distinct recommended items / catalog size
- diversity = mean share of item pairs in a list whose derived categories differ (intra-list diversity)
- novelty = mean -log2 of an item's training popularity (share of training invoices containing it;
  an item never sold in training counts as sold once, so the value stays finite)
Explore items (where personalisation beyond repeat shows): the items of a query's invoice the customer never
bought before it. ``explore_ndcg@10`` and ``explore_recall@20`` score the same list against them alone,
averaged over the queries that have at least one (``explore_invoices`` counts them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

RECALL_KS = (10, 20, 50)
K_MAX = 50
LIST_K = 10
METRICS = ("ndcg@10", "recall@10", "recall@20", "recall@50", "mrr", "coverage", "diversity", "novelty",
           "explore_ndcg@10", "explore_recall@20")


def hits(recs: np.ndarray, relevant: sparse.csr_matrix) -> np.ndarray:
    """bool [n, k]: is the item at each rank in the query's relevant set."""
    n_items = relevant.shape[1]
    rel = relevant.tocoo()
    keys = np.unique(rel.row.astype(np.int64) * n_items + rel.col)
    asked = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    return np.isin(asked, keys)


def relevant_counts(relevant: sparse.csr_matrix) -> np.ndarray:
    return np.diff(relevant.indptr).astype(np.float64)


def recall_at(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hit[:, :k].sum(axis=1) / np.maximum(n_relevant, 1.0)


def ndcg(hit: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hit[:, :k] * discount[:hit[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(discount)[np.clip(n_relevant.astype(np.int64), 1, k) - 1]
    return np.where(n_relevant > 0, dcg / ideal, 0.0)


def reciprocal_rank(hit: np.ndarray) -> np.ndarray:
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)


def ndcg_at(recs: np.ndarray, relevant: sparse.csr_matrix, k: int) -> float:
    """Mean NDCG@k over all queries (the tuning objective)."""
    if recs.shape[0] == 0:
        return 0.0
    return float(ndcg(hits(recs[:, :k], relevant), relevant_counts(relevant), k).mean())


def coverage(recs: np.ndarray, n_items: int) -> float:
    return float(np.unique(recs).size / n_items) if recs.size else 0.0


def intra_list_diversity(recs: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Per list: share of unordered item pairs from different categories (1 = all different)."""
    n = recs.shape[1]
    if n < 2:
        return np.zeros(recs.shape[0])
    cats = category[recs]
    same = ((cats[:, :, None] == cats[:, None, :]).sum(axis=(1, 2)) - n) / 2.0
    return 1.0 - same / (n * (n - 1) / 2.0)


def novelty(recs: np.ndarray, popularity: np.ndarray, n_invoices: int) -> np.ndarray:
    share = np.maximum(popularity, 1) / max(n_invoices, 1)
    return (-np.log2(share))[recs].mean(axis=1)


def explore_relevance(relevant: sparse.csr_matrix, history: sparse.csr_matrix) -> sparse.csr_matrix:
    """The relevant items each query's history does not contain (``history``: any positive entry = bought)."""
    bought = (history > 0).astype(np.float64)
    out = (relevant - relevant.multiply(bought)).tocsr()
    out.eliminate_zeros()
    return out


def summarize(recs: np.ndarray, relevant: sparse.csr_matrix, category: np.ndarray, popularity: np.ndarray,
              n_train_invoices: int, explore: sparse.csr_matrix | None = None) -> dict[str, float | None]:
    """The ``METRICS`` for one segment's queries (None for every metric when the segment is empty; the explore
    metrics are None without ``explore`` (``explore_relevance``) or when no query has an explore item)."""
    if recs.shape[0] == 0:
        return dict.fromkeys(METRICS)
    hit, n_rel = hits(recs, relevant), relevant_counts(relevant)
    shown = recs[:, :LIST_K]
    out: dict[str, Any] = {"ndcg@10": ndcg(hit, n_rel, 10).mean()}
    out |= {f"recall@{k}": recall_at(hit, n_rel, k).mean() for k in RECALL_KS}
    out |= {"mrr": reciprocal_rank(hit).mean(), "coverage": coverage(shown, category.size),
            "diversity": intra_list_diversity(shown, category).mean(),
            "novelty": novelty(shown, popularity, n_train_invoices).mean()}
    out |= {"explore_ndcg@10": None, "explore_recall@20": None}
    if explore is not None:
        n_explore = relevant_counts(explore)
        some = n_explore > 0
        if some.any():
            hit_e = hits(recs[some], explore[some])
            out["explore_ndcg@10"] = ndcg(hit_e, n_explore[some], 10).mean()
            out["explore_recall@20"] = recall_at(hit_e, n_explore[some], 20).mean()
    return {name: None if out[name] is None else round(float(out[name]), 6) for name in METRICS}


def recall_curve(recs: np.ndarray, relevant: sparse.csr_matrix) -> list[float]:
    """Mean recall@K for K = 1 .. list length (the plot's data)."""
    if recs.shape[0] == 0:
        return []
    hit, n_rel = hits(recs, relevant), relevant_counts(relevant)
    return [round(float(v), 6) for v in (np.cumsum(hit, axis=1) / np.maximum(n_rel, 1.0)[:, None]).mean(axis=0)]
