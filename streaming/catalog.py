"""What the processor needs of a model bundle: item id -> embedding row, category and brand."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.ranking.features import EMBED_DIM

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Catalog:
    version: str
    index: dict[str, int]
    vectors: np.ndarray        # float32 [n, EMBED_DIM]
    categories: list[str]
    brands: list[str]

    def vector(self, item_id: str) -> np.ndarray | None:
        row = self.index.get(item_id)
        return None if row is None else self.vectors[row]

    def category(self, item_id: str) -> str | None:
        row = self.index.get(item_id)
        return None if row is None else self.categories[row]

    def brand(self, item_id: str) -> str | None:
        row = self.index.get(item_id)
        return None if row is None else self.brands[row]


def load_catalog(registry: Path | str, model: str, version: str | None = None) -> Catalog:
    """The live (or given) bundle's items, checksums verified. Raises BundleError."""
    version = version or B.read_current(registry, model)
    path = Path(registry) / model / version
    B.verify_bundle(path)
    try:
        table = pq.read_table(path / B.ITEMS_FILE, columns=["item_id", "category", "brand"])
        vectors = np.load(path / B.ITEM_VECTORS_FILE, allow_pickle=False)
    except Exception as exc:
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    ids = [str(i) for i in table.column("item_id").to_pylist()]
    if vectors.shape != (len(ids), EMBED_DIM):
        raise BundleError(f"bundle {path}: item vectors {vectors.shape} do not match {len(ids)} items")
    cats = [str(c) for c in table.column("category").to_pylist()]
    brands = [str(b) for b in table.column("brand").to_pylist()]
    logger.info("catalog loaded", extra={"model_version": version, "items": len(ids)})
    return Catalog(version, {i: r for r, i in enumerate(ids)}, np.ascontiguousarray(vectors, dtype=np.float32),
                   cats, brands)
