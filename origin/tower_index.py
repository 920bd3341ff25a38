"""The two-tower's item vectors in a ``VectorIndex`` (HNSW), so the user tower's nearest items come from ANN,
filtered by the index, instead of an exact scan over every item vector.

The retrieval bundle ships the shard built at export (``model_export.retail_bundles.ship_tower_index``):
a process unpacks its own copy and opens it in well under a second; ``item_index.json`` names the sha256
of the ``item_vectors.npy`` it was built from and the payload it was built with. At open, points whose
payload the origin's catalog describes otherwise (stock, age flag, category; items the catalog lacks are
stored out of stock so no search returns them) are upserted again; when the bundle's vectors changed, or
it ships no shard, the vectors are indexed here instead (HNSW built at start: slower, logged).

Point key = the models' item id; payload = ``shared.models.item_shard.ITEM_FIELDS`` (0/1 integers).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from strata.origin.catalog import Catalog
from strata.origin.item_tower import TitleEncoder, tower_vectors
from strata.origin.models import OriginModels
from strata.shared.errors import StrataError
from strata.shared.models import bundle as B
from strata.shared.models.item_shard import ITEM_FIELDS, open_shipped_shard
from strata.shared.models.vector_index import IndexPoint, VectorIndex, open_vector_index

logger = logging.getLogger(__name__)
BATCH = 2000
ABSENT = "-"          # category of a model item the catalog lacks (stored out of stock)


def tower_labels(models: OriginModels, catalog: Catalog, items: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(category, in_stock 0/1, age_restricted 0/1) of model items ``items`` as the catalog has them now."""
    rows = models.row_of_model[items]
    known = rows >= 0
    r = np.where(known, rows, 0)
    cats = catalog.categories
    category = [cats[x] if k else ABSENT for x, k in zip(r.tolist(), known.tolist(), strict=True)]
    in_stock = np.where(known, np.asarray(catalog.stock)[r] > 0, False).astype(np.int64)
    age = np.where(known, np.asarray(catalog.age_restricted)[r] != 0, False).astype(np.int64)
    return category, in_stock, age


def tower_points(models: OriginModels, catalog: Catalog, items: np.ndarray) -> list[IndexPoint]:
    category, in_stock, age = tower_labels(models, catalog, items)
    vecs = models.pipeline.item_vectors
    ids = models.model_ids
    return [IndexPoint(str(ids[i]), vecs[i], {"category": c, "in_stock": s, "age_restricted": a})
            for i, c, s, a in zip(items.tolist(), category, in_stock.tolist(), age.tolist(), strict=True)]


def upsert_tower_items(index: VectorIndex, models: OriginModels, catalog: Catalog, items: np.ndarray) -> None:
    for lo in range(0, items.size, BATCH):
        index.upsert(tower_points(models, catalog, items[lo:lo + BATCH]))


def update_tower_items(models: OriginModels, catalog: Catalog, rows: np.ndarray, refresh: np.ndarray,
                       encoder: TitleEncoder | None) -> None:
    """``POST /v1/items`` on the two-tower side: catalog ``rows`` were written; ``refresh`` (bool per row)
    marks new items and items whose title, category or price changed, which the item tower embeds
    (``origin.item_tower``). Known items take their new vector in the models (so the ranker's tower score
    and text affinity follow) and, like every updated item, their stock, age flag and category in the index;
    new items join ``models.cold`` and the index."""
    rows = np.asarray(rows, dtype=np.int64)
    items = models.model_index(catalog, rows)
    known = items >= 0
    models.row_of_model[items[known]] = rows[known]
    embed = refresh | (~known & ~np.isin(rows, np.fromiter(models.cold, np.int64, len(models.cold))))
    if embed.any():
        got = tower_vectors(models, catalog, rows[embed], items[embed], encoder)
        if got is not None:
            _store(models, catalog, rows[embed], items[embed], *got)
    if models.index is None:
        return
    if known.any():
        upsert_tower_items(models.index, models, catalog, items[known])
    cold = [r for r in rows[~known].tolist() if r in models.cold]
    if cold:
        category, in_stock, age = _row_labels(catalog, np.asarray(cold, dtype=np.int64))
        models.index.upsert([IndexPoint(catalog.item_ids[r], models.cold[r],
                                        {"category": c, "in_stock": s, "age_restricted": a})
                             for r, c, s, a in zip(cold, category, in_stock.tolist(), age.tolist(), strict=True)])


def _store(models: OriginModels, catalog: Catalog, rows: np.ndarray, items: np.ndarray, vectors: np.ndarray,
           text: np.ndarray) -> None:
    pl = models.pipeline
    known = items >= 0
    if known.any():
        m = items[known]
        if not pl.item_vectors.flags.writeable:
            pl.item_vectors = pl.item_vectors.copy()
        pl.item_vectors[m] = vectors[known]
        models.vectors_changed()
        st = pl.stats
        if st.text is not None and text.shape[1] == st.text.shape[1]:
            st.text[m] = text[known]
        cat = np.array([models.category_of.get(catalog.categories[r], -1) for r in rows[known].tolist()])
        st.category[m[cat >= 0]] = cat[cat >= 0]
        st.price[m] = catalog.prices[rows[known]]
    for r, v in zip(rows[~known].tolist(), vectors[~known], strict=True):
        models.cold[r] = v


def _row_labels(catalog: Catalog, rows: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    return ([catalog.categories[r] for r in rows.tolist()], (catalog.stock[rows] > 0).astype(np.int64),
            catalog.age_restricted[rows].astype(np.int64))


def open_tower_index(bundle_dir: Path, models: OriginModels, catalog: Catalog, shard_dir: Path) -> VectorIndex | None:
    """The bundle's shipped shard, unpacked into ``shard_dir`` and re-labelled where the catalog differs;
    None when the bundle ships none or it was built from other vectors (the caller indexes instead)."""
    bundle_dir = Path(bundle_dir)
    meta_path, tar = bundle_dir / B.ITEM_INDEX_META_FILE, bundle_dir / B.ITEM_INDEX_FILE
    if not meta_path.is_file() or not tar.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("vectors_sha256") != B.sha256_file(bundle_dir / B.ITEM_VECTORS_FILE):
        logger.warning("the retrieval bundle's shipped index was built from other vectors; indexing them instead")
        return None
    shipped = meta.get("payload")
    n = models.model_ids.size
    if meta.get("points") != n or not shipped or len(shipped.get("category", ())) != n:
        logger.warning("the retrieval bundle's shipped index does not cover every item; indexing instead")
        return None
    t0 = time.perf_counter()
    index = open_shipped_shard(tar, shard_dir)
    items = np.arange(n, dtype=np.int64)
    category, in_stock, age = tower_labels(models, catalog, items)
    names = np.asarray(shipped["category_names"], dtype=object)[np.asarray(shipped["category"], dtype=np.int64)]
    differs = ((names != np.asarray(category, dtype=object)) | (in_stock != int(shipped.get("in_stock", 1)))
               | (age != np.asarray(shipped["age_restricted"], dtype=np.int64)))
    relabel = np.flatnonzero(differs)
    try:
        upsert_tower_items(index, models, catalog, relabel)
    except StrataError:
        index.close()
        raise
    logger.info("two-tower item index opened from the bundle",
                extra={"items": n, "relabelled": int(relabel.size), "seconds": round(time.perf_counter() - t0, 3)})
    return index


def build_tower_index(models: OriginModels, catalog: Catalog, backend: str, location: str) -> VectorIndex:
    """Every model item indexed at ``location`` (HNSW built for the edge backend: seconds to a minute)."""
    t0 = time.perf_counter()
    vecs = models.pipeline.item_vectors
    index = open_vector_index(backend, location, dim=int(vecs.shape[1]), fields=ITEM_FIELDS,
                              collection="tower-items")
    upsert_tower_items(index, models, catalog, np.arange(models.model_ids.size, dtype=np.int64))
    index.optimize()
    logger.info("two-tower item index built", extra={"backend": backend, "items": int(models.model_ids.size),
                                                      "seconds": round(time.perf_counter() - t0, 3)})
    return index
