"""The retrieval (two-tower) and ranker bundles: layout, shared by the writer (model_export) and the origin.

    <registry>/retrieval/CURRENT, <registry>/retrieval/<version>/
        user_tower.onnx     input "history" int64 [N, L] (last L purchases, most recent first, pad = n_items)
                            -> output "user_vector" float32 [N, dim], L2-normalised
        item_vectors.npy    float32 [n_items, dim] the item tower's L2-normalised vectors
        items.parquet       item_id, title, category_idx, price (row i = vector i)
        manifest.json       name, version, created, inputs/outputs, history_len, dim, metrics, parity, files
    <registry>/ranker/CURRENT, <registry>/ranker/<version>/
        ranker.onnx         input "features" float32 [N, N_FEATURES] (shared.ranker_features rows)
                            -> output "score" float32 [N], higher ranks first
        item_stats.npz      popularity, recent_popularity, price, category, repeat_rate, covis_items,
                            covis_weights (row i = items.parquet row i)
        items.parquet       item_id
        manifest.json       ..., feature_spec_version, feature_names, candidate sizes, parity, files

Both bundles of one export share the item order; ``load_retrieval_ranker`` refuses a pair that does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared import bundle as B
from shared.errors import BundleError
from shared.ranker_features import FEATURE_SPEC_VERSION, ItemStats
from shared.ranker_pipeline import CandidateSizes, RankerModel, RetrievalRanker, UserTowerModel

RETRIEVAL_MODEL = "retrieval"
RANKER_MODEL = "ranker"
USER_TOWER_FILE = "user_tower.onnx"
RANKER_FILE = "ranker.onnx"
ITEM_STATS_FILE = "item_stats.npz"
RETRIEVAL_FILES = (USER_TOWER_FILE, B.ITEM_VECTORS_FILE, B.ITEMS_FILE)
RANKER_FILES = (RANKER_FILE, ITEM_STATS_FILE, B.ITEMS_FILE)
STATS_ARRAYS = ("popularity", "recent_popularity", "price", "category", "repeat_rate", "covis_items",
                "covis_weights")


def bundle_dir(registry: Path | str, model: str, version: str | None = None) -> Path:
    return Path(registry) / model / (version or B.read_current(registry, model))


def read_item_ids(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    try:
        return np.asarray(pq.read_table(path / B.ITEMS_FILE, columns=["item_id"]).column(0).to_pylist(), dtype=str)
    except Exception as exc:
        raise BundleError(f"cannot read {path / B.ITEMS_FILE}: {exc}") from exc


def read_item_stats(path: Path) -> ItemStats:
    try:
        with np.load(path / ITEM_STATS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in STATS_ARRAYS}
    except Exception as exc:
        raise BundleError(f"cannot read {path / ITEM_STATS_FILE}: {exc}") from exc
    n = arrays["popularity"].shape[0]
    if any(a.shape[0] != n for a in arrays.values()):
        raise BundleError(f"{path / ITEM_STATS_FILE}: arrays disagree on the number of items")
    return ItemStats(**arrays)


def load_retrieval_ranker(registry: Path | str, retrieval_version: str | None = None,
                          ranker_version: str | None = None, threads: int = 1,
                          sizes: CandidateSizes | None = None) -> tuple[RetrievalRanker, np.ndarray, dict]:
    """(pipeline, item ids, {"retrieval": manifest, "ranker": manifest}) from verified bundles."""
    r_dir = bundle_dir(registry, RETRIEVAL_MODEL, retrieval_version)
    k_dir = bundle_dir(registry, RANKER_MODEL, ranker_version)
    r_manifest = B.verify_bundle(r_dir, required=RETRIEVAL_FILES)
    k_manifest = B.verify_bundle(k_dir, FEATURE_SPEC_VERSION, required=RANKER_FILES)
    ids = read_item_ids(r_dir)
    if not np.array_equal(ids, read_item_ids(k_dir)):
        raise BundleError(f"{r_dir} and {k_dir} list different items; export them together")
    try:
        vectors = np.load(r_dir / B.ITEM_VECTORS_FILE, allow_pickle=False)
    except Exception as exc:
        raise BundleError(f"cannot read {r_dir / B.ITEM_VECTORS_FILE}: {exc}") from exc
    stats = read_item_stats(k_dir)
    if vectors.shape[0] != ids.size or stats.n_items != ids.size:
        raise BundleError(f"{ids.size} items but {vectors.shape[0]} vectors and {stats.n_items} stats rows")
    if sizes is None:
        sizes = CandidateSizes(**k_manifest.get("candidates", {}))
    pipeline = RetrievalRanker(UserTowerModel(r_dir / USER_TOWER_FILE, threads), vectors,
                               RankerModel(k_dir / RANKER_FILE, threads), stats, sizes)
    return pipeline, ids, {"retrieval": r_manifest, "ranker": k_manifest}
