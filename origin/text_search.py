"""Item text vectors (all-MiniLM-L6-v2 through ``shared.models.text_encoder``) in their own vector index: what the
content source searches with a query or a user's stated preferences, and how a new item becomes
findable the moment ``POST /v1/items`` returns.

Loaded from the registry's ``text-encoder`` bundle when there is one (without it the content source stays
lexical). The bundle carries the text vectors of the catalog it was exported against and, for the ``edge``
backend, the built HNSW shard over them, unpacked into a directory this process owns. Items whose text
differs from the bundle's (or that it does not hold) are embedded at load; bundle items the catalog does
not hold are removed from the index.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from strata.origin.catalog import Catalog
from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.models import text_encoder as T
from strata.shared.models.item_shard import ITEM_FIELDS, item_payload, open_shipped_shard
from strata.shared.models.vector_index import Hit, IndexPoint, PayloadFilter, VectorIndex, open_vector_index

logger = logging.getLogger(__name__)
BATCH = 2000
COLLECTION = "item_text"


class TextSearch:
    """The encoder, the text index, and a small cache of embedded query texts (repeated searches are common)."""

    def __init__(self, encoder: T.TextEncoder, index: VectorIndex, version: str, cache_size: int = 4096) -> None:
        self.encoder = encoder
        self.index = index
        self.version = version
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.load_stats: dict = {}

    def embed(self, text: str) -> np.ndarray:
        key = " ".join(text.lower().split())
        v = self._cache.get(key)
        if v is None:
            v = self.encoder.encode_one(key)
            self._cache[key] = v
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return v

    def search(self, vec: np.ndarray, limit: int, flt: PayloadFilter | None = None, ef: int | None = None) -> list[Hit]:
        return self.index.search(vec, limit, flt, ef=ef)

    def upsert(self, catalog: Catalog, rows: Sequence[int], vectors: np.ndarray | None = None) -> None:
        """(Re-)embed the rows' text (unless ``vectors`` are given) and write them with their payload."""
        rows = list(rows)
        if not rows:
            return
        if vectors is None:
            vectors = self.encoder.encode([T.item_text(catalog.titles[r], catalog.categories[r]) for r in rows])
        for lo in range(0, len(rows), BATCH):
            self.index.upsert([IndexPoint(catalog.item_ids[r], vectors[j], item_payload(
                catalog.categories[r], catalog.stock[r] > 0, catalog.age_restricted[r]))
                for j, r in enumerate(rows[lo:lo + BATCH], start=lo)])

    def close(self) -> None:
        self.index.close()


def _bundle_vectors(path: Path) -> tuple[dict[str, tuple[str, int]], np.ndarray | None]:
    """item_id -> (text, row) and the vectors, when the bundle carries a catalog."""
    if not (path / T.ITEM_TEXT_FILE).is_file():
        return {}, None
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path / T.ITEM_TEXT_FILE)
        vecs = np.load(path / T.ITEM_TEXT_VECTORS_FILE, allow_pickle=False)
        ids, texts = t.column("item_id").to_pylist(), t.column("text").to_pylist()
    except Exception as exc:
        raise BundleError(f"cannot read item text of {path}: {exc}") from exc
    if vecs.ndim != 2 or vecs.shape[0] != len(ids):
        raise BundleError(f"{path}: {vecs.shape} text vectors for {len(ids)} items")
    return {str(i): (str(x), j) for j, (i, x) in enumerate(zip(ids, texts, strict=True))}, vecs


def load_text_search(registry: Path | str, catalog: Catalog, *, model: str = T.TEXT_MODEL, backend: str = "edge",
                     location: str | None = None, shard_dir: Path | None = None, threads: int = 1) -> TextSearch | None:
    """The text search for ``catalog``, or None when the registry has no ``model`` bundle (lexical fallback).

    ``edge``: the bundle's shard is unpacked into ``shard_dir`` (a private directory; required);
    ``qdrant``: the ``item_text`` collection at ``location`` is filled from the bundle's vectors.
    """
    root = Path(registry) / model
    if not (root / B.CURRENT_FILE).is_file():
        logger.info("no %s bundle in %s: the content source matches words", model, registry)
        return None
    t0 = time.perf_counter()
    version = B.read_current(registry, model)
    path = root / version
    encoder, manifest = T.load_text_encoder(path, threads=threads)
    known, vecs = _bundle_vectors(path)
    want = [T.item_text(t, c) for t, c in zip(catalog.titles, catalog.categories, strict=True)]
    reuse = [r for r, text in enumerate(want) if known.get(catalog.item_ids[r], ("",))[0] == text]
    stale = sorted(set(range(len(catalog))) - set(reuse))
    gone = sorted(set(known) - set(catalog.row))
    shipped = path / T.TEXT_INDEX_FILE
    t1 = time.perf_counter()
    if backend == "edge" and shipped.is_file():
        if shard_dir is None:
            raise BundleError("the edge backend needs a private directory for the text shard", field="vector_index")
        index: VectorIndex = open_shipped_shard(shipped, shard_dir)
        search = TextSearch(encoder, index, version)
        search.index.delete(gone)
    else:
        where = location or (str(shard_dir) if shard_dir is not None else ":memory:")
        index = open_vector_index(backend, where, dim=encoder.dim, fields=ITEM_FIELDS, collection=COLLECTION)
        search = TextSearch(encoder, index, version)
        if reuse and vecs is not None:
            search.upsert(catalog, reuse, vecs[[known[catalog.item_ids[r]][1] for r in reuse]])
    t2 = time.perf_counter()
    search.upsert(catalog, stale)
    if stale:
        logger.warning("text bundle %s lacks %d of %d catalog items: embedded at load", version, len(stale), len(catalog))
    search.load_stats = {"version": version, "items": len(catalog), "embedded_at_load": len(stale),
                         "removed": len(gone), "index_open_s": round(t2 - t1, 3),
                         "load_s": round(time.perf_counter() - t0, 3), "shipped_shard": backend == "edge" and shipped.is_file(),
                         "parity_min_cosine": manifest.get("parity", {}).get("min_cosine")}
    logger.info("text search ready", extra=search.load_stats)
    return search
