"""The item vectors in a ``VectorIndex``, with the payload the candidate sources filter on.

Payload per item: ``category`` (keyword), ``in_stock`` and ``age_restricted`` (0/1 integers). Items the
bundle never saw interact (zero vector) start from their category's centroid, like cold items added by
``POST /v1/items``, so every item is searchable.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from strata.origin.catalog import Catalog
from strata.shared.models.item_shard import ITEM_FIELDS
from strata.shared.models.vector_index import IndexPoint, PayloadFilter, VectorIndex, open_vector_index
from strata.shared.ranking.guardrails import Guardrails

logger = logging.getLogger(__name__)
FIELDS = ITEM_FIELDS
BATCH = 2000


class _HasPolicy(Protocol):
    policy: Guardrails


def item_points(catalog: Catalog, rows: np.ndarray | Sequence[int]) -> list[IndexPoint]:
    rows = np.asarray(rows, dtype=np.int64)
    vecs = catalog.vectors[rows]
    cold = np.flatnonzero(~np.any(vecs != 0, axis=1))
    if cold.size:          # indexed only: the scorer keeps reading 0 similarity as "no evidence"
        vecs = vecs.copy()
        cats = [catalog.categories[r] for r in rows[cold].tolist()]
        centroids = catalog.category_centroids(cats)
        vecs[cold] = np.stack([centroids[c] for c in cats])
    ids, categories = catalog.item_ids, catalog.categories
    stock = (catalog.stock[rows] > 0).astype(np.int64).tolist()
    age = catalog.age_restricted[rows].astype(np.int64).tolist()
    return [IndexPoint(ids[r], v, {"category": categories[r], "in_stock": s, "age_restricted": a})
            for r, v, s, a in zip(rows.tolist(), vecs, stock, age, strict=True)]


def private_shard_dir() -> Path:
    """A temporary directory for a process's own shard (a shard has one opener); the caller removes it."""
    return Path(tempfile.mkdtemp(prefix="strata-origin-index-"))


def build_index(catalog: Catalog, backend: str = "edge", location: str | None = None) -> VectorIndex:
    """A fresh index of every catalog item at ``location`` (a shard directory for ``edge``, a server URL
    or local-mode path for ``qdrant``)."""
    t0 = time.perf_counter()
    index = open_vector_index(backend, location or ":memory:", dim=catalog.vectors.shape[1], fields=FIELDS)
    points = item_points(catalog, range(len(catalog)))
    for lo in range(0, len(points), BATCH):
        index.upsert(points[lo:lo + BATCH])
    logger.info("vector index built", extra={"backend": backend, "items": len(points),
                                             "seconds": round(time.perf_counter() - t0, 3)})
    return index


def source_filter(state: _HasPolicy, age_verified: bool) -> PayloadFilter:
    """What an index-backed source may return: in stock, the age gate, no banned category (the guardrail
    stages check every candidate again regardless)."""
    equals = {"in_stock": 1}
    if not age_verified:
        equals["age_restricted"] = 0
    return PayloadFilter(equals=equals, none_of={"category": list(state.policy.banned_categories)})


def open_item_index(bundle_dir: Path, catalog: Catalog, shard_dir: Path) -> VectorIndex | None:
    """The bundle's shipped shard (HNSW built at export) unpacked into ``shard_dir``, with the items without
    a vector placed at their category's centroid unless the export placed them already; None when the
    bundle ships none or it was built from other vectors than the bundle's (the caller then indexes the
    catalog itself)."""
    import json

    from strata.shared.models import bundle as B
    from strata.shared.models.item_shard import open_shipped_shard

    meta_path = Path(bundle_dir) / B.ITEM_INDEX_META_FILE
    if not meta_path.is_file() or not (Path(bundle_dir) / B.ITEM_INDEX_FILE).is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("vectors_sha256") != B.sha256_file(Path(bundle_dir) / B.ITEM_VECTORS_FILE):
        logger.warning("shipped item index was built from other vectors; indexing the catalog instead")
        return None
    t0 = time.perf_counter()
    index = open_shipped_shard(Path(bundle_dir) / B.ITEM_INDEX_FILE, shard_dir)
    missing = np.flatnonzero(~np.any(catalog.vectors != 0, axis=1))
    if meta.get("unindexed") != missing.size:       # an older bundle (or a category without vectors)
        points = item_points(catalog, missing)      # one pass for every category's centroid
        for lo in range(0, len(points), BATCH):
            index.upsert(points[lo:lo + BATCH])
    else:
        missing = missing[:0]                       # the export placed them (``model_export.item_index``)
    logger.info("shipped item index opened", extra={"items": len(catalog), "placed_at_centroid": len(missing),
                                                    "seconds": round(time.perf_counter() - t0, 3)})
    return index
