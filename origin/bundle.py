"""Load the edge-scorer bundle (``shared.models.bundle`` layout, checksums verified) into the origin's catalog,
popular pools and ranker. Items carry no stock level in the bundle: they start in stock (1) until
``POST /v1/items`` says otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.origin.catalog import Catalog
from strata.origin.scorer import OnnxRanker
from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.ranking.features import FEATURE_SPEC_VERSION

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class OriginBundle:
    version: str
    catalog: Catalog
    pools: dict[str, list[str]]     # segment (channel or "default") -> item ids, most popular first
    ranker: OnnxRanker


def load_origin_bundle(registry: Path | str, model: str, version: str | None = None,
                       ort_threads: int = 1) -> OriginBundle:
    version = version or B.read_current(registry, model)
    path = Path(registry) / model / version
    B.verify_bundle(path, FEATURE_SPEC_VERSION)
    t, feats, vecs, pools = B.read_item_arrays(path)
    try:
        ids = [str(i) for i in t.column("item_id").to_pylist()]
        titles = [str(x) for x in t.column("title").to_pylist()]
        cats = [str(c) for c in t.column("category").to_pylist()]
        cat_idx = t.column("category_idx").to_pylist()
        prices = t.column("price").to_numpy()
        pop = t.column("popularity").to_numpy()
    except Exception as exc:
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    age = B.age_restricted_flags(t)
    index = dict(zip(cats, cat_idx, strict=True))
    catalog = Catalog(ids, titles, cats, {c: int(i) for c, i in index.items()}, prices, pop, age,
                      np.ones(len(ids), dtype=np.int64), feats, vecs)
    if not pools.get("default"):
        raise BundleError(f"bundle {path}: pools.json has no non-empty 'default' segment")
    logger.info("origin loaded bundle", extra={"model_version": version, "items": len(ids)})
    return OriginBundle(version, catalog, pools, OnnxRanker(path / B.MODEL_FILE, ort_threads))
