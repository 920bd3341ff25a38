"""Load a verified model bundle into the arrays and ONNX session a serving tier ranks with (the edge and
tier 2 load it the same way: same checks, same scorer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.models.onnx_scorer import OnnxScorer
from strata.shared.ranking.features import FEATURE_DIM, FEATURE_SPEC_VERSION

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedBundle:
    version: str
    path: Path
    manifest: dict
    scorer: OnnxScorer
    item_ids: list[str]
    index: dict[str, int]           # item id -> row
    categories: list[str]           # category name per row (guardrails: banned categories, diversity)
    age_restricted: np.ndarray      # bool per row (guardrails: the age gate)
    item_features: np.ndarray       # float32 [n, ITEM_DIM]
    item_vectors: np.ndarray        # float32 [n, EMBED_DIM]
    pools: dict[str, np.ndarray]    # segment -> row indices, most popular first
    # what the catalog topic changed since the export (``shared.models.catalog_overlay``); None: nothing
    in_stock: np.ndarray | None = None                        # bool per row; None: every row in stock
    fresh: np.ndarray | None = None                           # rows added after the export, oldest first
    earlier_categories: dict[int, frozenset[str]] | None = None   # row -> categories it had before


def load_bundle(registry: Path | str, model: str, version: str | None = None, ort_threads: int = 1) -> LoadedBundle:
    """Verify checksums and load. Raises BundleError on anything wrong; nothing is half-loaded."""
    version = version or B.read_current(registry, model)
    path = Path(registry) / model / version
    manifest = B.verify_bundle(path, FEATURE_SPEC_VERSION)
    table, feats, vecs, pools_raw = B.read_item_arrays(path, ["item_id", "category", "age_restricted"])
    items = table.column("item_id").to_pylist()
    categories = [str(c) for c in table.column("category").to_pylist()]
    age = B.age_restricted_flags(table)
    n = len(items)
    index = {item_id: i for i, item_id in enumerate(items)}
    if len(index) != n:
        raise BundleError(f"bundle {path}: duplicate item ids")
    if not pools_raw.get("default"):
        raise BundleError(f"bundle {path}: pools.json has no non-empty 'default' segment")
    pools = {seg: np.array([index[i] for i in ids if i in index], dtype=np.int64) for seg, ids in pools_raw.items()}
    scorer = OnnxScorer(path / B.MODEL_FILE, threads=ort_threads)
    probe = scorer.score(np.zeros((2, FEATURE_DIM), dtype=np.float32))
    if probe.shape != (2,) or not np.all(np.isfinite(probe)):
        raise BundleError(f"bundle {path}: model output shape {probe.shape} or values are wrong")
    logger.info("loaded bundle", extra={"model_version": version, "items": n})
    return LoadedBundle(version, path, manifest, scorer, items, index, categories, age,
                        np.ascontiguousarray(feats, dtype=np.float32),
                        np.ascontiguousarray(vecs, dtype=np.float32), pools)
