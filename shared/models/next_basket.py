"""Basket-sequence weights of the published next-basket methods, numpy only, shared by the offline baselines
(``model_export.evaluation.tifu_knn`` / ``upcf``) and the deep ranker's features, so the ranker sees exactly
the personal vectors those methods rank by.

Every function takes the purchases of many rows (customers or queries) as distinct (invoice, item) pairs
sorted by row and then time, an invoice's pairs contiguous, and returns one value per pair.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Within = Literal["group", "history"]


def basket_ordinals(row: np.ndarray, invoice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: (0-based ordinal of its basket within its row, number of baskets of the row)."""
    row = np.asarray(row)
    if row.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    row_opens = np.r_[True, row[1:] != row[:-1]]
    basket_opens = row_opens | np.r_[True, invoice[1:] != invoice[:-1]]
    seen = np.cumsum(basket_opens)  # baskets up to and including this pair's, over all rows
    first = seen[row_opens] - 1  # baskets before each row's first pair
    row_index = np.cumsum(row_opens) - 1
    ordinal = seen - 1 - first[row_index]
    ends = np.r_[np.flatnonzero(row_opens)[1:], row.size] - 1
    count = (ordinal[ends] + 1)[row_index]
    return ordinal.astype(np.int64), count.astype(np.int64)


def tifu_weights(ordinal: np.ndarray, count: np.ndarray, m: int, rb: float, rg: float,
                 within: Within = "group") -> np.ndarray:
    """float64 per pair: its weight in TIFU-KNN's personal vector (Hu et al., SIGIR 2020).

    A row's n baskets split into G = min(m, n) groups of consecutive baskets: with n = q*m + s the first
    m - s groups hold q baskets and the last s hold q + 1 (fewer baskets than m: one per group). A basket
    weighs rb ** (baskets after it in its group) / (its group's size) * rg ** (groups after it) / G; summed
    per item this is the paper's user vector. ``within="history"``: rb counts the baskets to the end of the
    history instead (the authors' code)."""
    j, n = ordinal, count
    few = n < m
    q, s = np.divmod(n, m)
    boundary = (m - s) * q  # baskets in the first m - s groups of q
    late = j >= boundary
    size = np.where(few, 1, np.where(late, q + 1, q))
    into = np.where(late, j - boundary, j)  # ordinal from the start of its run of equal-size groups
    group = np.where(few, j, np.where(late, m - s, 0) + into // np.maximum(size, 1))
    position = np.where(few, 0, into % np.maximum(size, 1))
    groups = np.minimum(n, m)
    after = (size - 1 - position) if within == "group" else (n - 1 - j)
    return rb ** after / size * rg ** (groups - 1 - group) / np.maximum(groups, 1)


def recent_share_weights(ordinal: np.ndarray, count: np.ndarray, r: int) -> np.ndarray:
    """float64 per pair: 1 / min(r, n) for the pairs in the row's r most recent baskets, else 0 (r <= 0: all);
    summed per item this is UP-CF@r's recency-aware user popularity (Faggioli et al., 2020)."""
    window = count if r <= 0 else np.minimum(count, r)
    return np.where(ordinal >= count - window, 1.0 / np.maximum(window, 1), 0.0)
