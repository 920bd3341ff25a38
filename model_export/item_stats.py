"""Training-side tables for the ranker and the two-tower: per-item statistics and query histories.

``item_stats`` turns training baskets into the ``shared.models.ranker_features.ItemStats`` the ranker bundle
ships; ``histories`` turns evaluation ``Queries`` into the ``Histories`` batch the shared feature code
reads. Co-visitation is the cosine between items' buyer sets (as ``item_knn``), the self-similarity
left out (repeat features cover it), each item's ``neighbours`` best kept.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.split import Queries
from strata.shared.models.next_basket import basket_ordinals, tifu_weights
from strata.shared.models.ranker_features import (
    DAY_MS,
    FIRST_RECENT_DAYS,
    RECENT_DAYS,
    TIFU_M,
    TIFU_RB,
    TIFU_RG,
    Histories,
    ItemStats,
)
from strata.shared.models.ranker_neighbours import CustomerVectors

BLOCK = 1024  # items per block of the co-visitation product: a dense [1024, n_items] float32 block


def item_stats(train: Baskets, neighbours: int = 100, text: np.ndarray | None = None) -> ItemStats:
    """``text``: float32 [n_items, dim] item text vectors, carried for the ranker's text affinity."""
    n_items = train.catalog.n_items
    popularity = train.popularity().astype(np.float32)
    end = int(train.ts_ms.max()) if len(train) else 0
    recent = train.ts_ms >= end - RECENT_DAYS * DAY_MS
    recent_pop = np.bincount(train.item[recent], minlength=n_items).astype(np.float32)
    per_buyer = sparse.csr_matrix((np.ones(len(train)), (train.customer, train.item)),
                                  shape=(train.n_customers, n_items))
    per_buyer.sum_duplicates()
    buyers = np.bincount(per_buyer.indices, minlength=n_items).astype(np.float64)
    repeaters = np.bincount(per_buyer.indices[per_buyer.data >= 2], minlength=n_items).astype(np.float64)
    repeat_rate = (repeaters / np.maximum(buyers, 1.0)).astype(np.float32)
    items, weights = covisitation_neighbours(per_buyer, neighbours)
    ordinal, count = basket_ordinals(train.customer, train.invoice)
    first = np.bincount(train.item[ordinal == 0], minlength=n_items).astype(np.float32)
    fresh = (ordinal == 0) & (train.ts_ms >= end - FIRST_RECENT_DAYS * DAY_MS)
    recent_first = np.bincount(train.item[fresh], minlength=n_items).astype(np.float32)
    customers = CustomerVectors.from_pairs(train.customer, train.item,
                                           tifu_weights(ordinal, count, TIFU_M, TIFU_RB, TIFU_RG), n_items)
    return ItemStats(popularity, recent_pop, train.catalog.price.astype(np.float32),
                     train.catalog.category.astype(np.int64), repeat_rate, items, weights,
                     None if text is None else np.asarray(text, dtype=np.float32), first, customers, recent_first)


def covisitation_neighbours(per_buyer: sparse.csr_matrix, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 [n, M] neighbours, -1 padded; float32 [n, M] cosine) of the buyer-set cosine, self excluded."""
    bought = per_buyer.copy()
    bought.data[:] = 1.0
    n_items = bought.shape[1]
    norms = np.sqrt(np.asarray(bought.sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    unit = (bought @ sparse.diags(1.0 / norms)).astype(np.float32).tocsc()
    m = min(neighbours, max(n_items - 1, 1))
    items = np.full((n_items, m), -1, dtype=np.int64)
    weights = np.zeros((n_items, m), dtype=np.float32)
    for lo in range(0, n_items, BLOCK):
        hi = min(lo + BLOCK, n_items)
        sim = np.asarray((unit[:, lo:hi].T @ unit).todense(), dtype=np.float32)
        sim[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        top = np.argpartition(-sim, m - 1, axis=1)[:, :m] if m < n_items else np.argsort(-sim, axis=1)[:, :m]
        w = np.take_along_axis(sim, top, axis=1)
        order = np.argsort(-w, axis=1, kind="stable")
        top, w = np.take_along_axis(top, order, axis=1), np.take_along_axis(w, order, axis=1)
        items[lo:hi] = np.where(w > 0, top, -1)
        weights[lo:hi] = np.where(w > 0, w, 0.0)
    return items, weights


def histories(queries: Queries) -> Histories:
    """Each query's purchases strictly before it (time order), as the shared feature code reads them."""
    rows, pos = queries.history_positions()
    lengths = queries.stop - queries.start
    ptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    log = queries.log
    age = np.maximum(0.0, (queries.at_ms[rows] - log.ts_ms[pos]).astype(np.float64) / DAY_MS)
    return Histories(ptr, log.item[pos].astype(np.int64), log.invoice[pos].astype(np.int64), age)
