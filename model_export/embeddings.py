"""Item embeddings and popularity LEARNED from training interactions (never from the hidden truth).

Embeddings: truncated SVD of the user x item interaction matrix, item factors scaled by their singular
values and L2-normalised to ``shared.ranking.features.EMBED_DIM``. Interactions are weighted click 1, cart +1,
purchase +2, then damped (log1p), each user row L2-normalised and each item column divided by the square
root of its norm: without that, heavy users and blockbuster items dominate the leading factors and the
long tail (most of a 12k catalog) gets near-random directions. Items with no interaction in the window
get an all-zero vector: their session similarity is then exactly 0, the value a row without a session
carries, so the scorer reads them as "no evidence" rather than as noise.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from sklearn.decomposition import TruncatedSVD

from strata.shared.contracts.api import EVENT_TYPES
from strata.shared.ranking.features import EMBED_DIM

logger = logging.getLogger(__name__)

EVENT_WEIGHTS = {"view": 0.0, "click": 1.0, "add_to_cart": 1.0, "purchase": 2.0}


def interaction_matrix(users: np.ndarray, items: np.ndarray, event_type: np.ndarray, n_users: int,
                       n_items: int) -> sparse.csr_matrix:
    weights = np.array([EVENT_WEIGHTS.get(t, 0.0) for t in EVENT_TYPES])[event_type]
    keep = weights > 0
    m = sparse.coo_matrix((weights[keep], (users[keep], items[keep])), shape=(n_users, n_items)).tocsr()
    m.sum_duplicates()
    m.data = np.log1p(m.data)
    row = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    col = np.sqrt(np.sqrt(np.asarray(m.multiply(m).sum(axis=0)).ravel()))
    row[row == 0], col[col == 0] = 1.0, 1.0
    return (sparse.diags(1.0 / row) @ m @ sparse.diags(1.0 / col)).tocsr()


def learn_item_vectors(matrix: sparse.csr_matrix, seed: int, dim: int = EMBED_DIM) -> np.ndarray:
    """float32 [n_items, dim], unit rows; zero rows for items never interacted with."""
    n_items = matrix.shape[1]
    k = min(dim, *matrix.shape)  # tiny logs: fewer factors, zero-padded to dim
    vectors = np.zeros((n_items, dim))
    explained = 0.0
    if k > 0 and matrix.nnz:
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
        svd.fit(matrix)
        vectors[:, :k] = svd.components_.T * svd.singular_values_
        explained = float(svd.explained_variance_ratio_.sum())
    seen = np.asarray(matrix.getnnz(axis=0)).ravel() > 0
    norms = np.linalg.norm(vectors, axis=1)
    ok = seen & (norms > 0)
    out = np.zeros((n_items, dim), dtype=np.float32)
    out[ok] = vectors[ok] / norms[ok, None]
    logger.info("item vectors: %d/%d items embedded, explained variance %.3f", int(ok.sum()), n_items,
                explained)
    return out


def click_popularity(items: np.ndarray, event_type: np.ndarray, n_items: int) -> np.ndarray:
    """Training click counts per item: the popularity the item features and pools are built from."""
    clicks = event_type == EVENT_TYPES.index("click")
    return np.bincount(items[clicks], minlength=n_items).astype(np.int64)
