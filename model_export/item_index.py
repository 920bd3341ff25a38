"""The ANN shard of a bundle's item vectors, HNSW built at export (``shared.models.item_shard``), so the origin
opens it instead of indexing the catalog at start.

Items without a vector (no interactions) are left out of the graph and added after it, at their category's
centroid (``shared.models.cold_placement``, the function the origin places later items with); ``unindexed`` in
``item_index.json`` counts them. Placing ~68k such items one batch at a time was most of a 100k origin's
start (``origin.retrieval.open_item_index`` now only places what the shard lacks). ``item_index.json``
records the sha256 of the ``item_vectors.npy`` the shard was built from; the origin uses the shard only if
the bundle's vectors are still those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strata.model_export import registry
from strata.shared.models import bundle as B
from strata.shared.models.cold_placement import category_centroids
from strata.shared.models.item_shard import build_shipped_shard, item_payload
from strata.shared.models.vector_index import IndexPoint


def ship_item_index(staging: Path, item_ids: np.ndarray, categories: np.ndarray, age_restricted: np.ndarray,
                    vectors: np.ndarray, m: int = 16, ef_construct: int = 100) -> dict:
    """Writes item_index.tar and item_index.json next to an already written item_vectors.npy."""
    has = np.any(vectors != 0, axis=1)
    rows = np.flatnonzero(has)
    cats = [str(c) for c in np.asarray(categories).tolist()]
    cold = np.flatnonzero(~has)
    centroids = category_centroids(vectors, cats, [cats[r] for r in cold.tolist()])
    placed = [IndexPoint(str(item_ids[r]), v, item_payload(cats[r], 1, bool(age_restricted[r])))
              for r in cold.tolist() if (v := centroids[cats[r]]) is not None]
    stats = build_shipped_shard(staging / B.ITEM_INDEX_FILE, [str(item_ids[r]) for r in rows], vectors[rows],
                                [item_payload(cats[r], 1, bool(age_restricted[r])) for r in rows],
                                m=m, ef_construct=ef_construct, unindexed=placed)
    meta = {**stats, "vectors_file": B.ITEM_VECTORS_FILE,
            "vectors_sha256": B.sha256_file(staging / B.ITEM_VECTORS_FILE)}
    registry.write_json(staging / B.ITEM_INDEX_META_FILE, meta)
    return meta
