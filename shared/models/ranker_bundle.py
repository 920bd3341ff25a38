"""The retrieval (two-tower) and ranker bundles: layout, shared by the writer (model_export) and the origin.

    <registry>/retrieval/CURRENT, <registry>/retrieval/<version>/
        user_tower.onnx     input "history" int64 [N, L] (last L purchases, most recent first, pad = n_items)
                            -> output "user_vector" float32 [N, dim], L2-normalised
        item_vectors.npy    float32 [n_items, dim] the item tower's L2-normalised vectors
        item_tower.onnx     inputs "item" int64 [N] (row, or -1 / n_items: an item the export never saw),
                            "category" int64 [N] (category_idx; unknown: -1), "price_bucket" int64 [N]
                            (how many ``price_bucket_edges_log`` are <= log(price)), "text" float32
                            [N, 384] (MiniLM of ``shared.models.text_encoder.tower_text(title)``)
                            -> "item_vector" float32 [N, dim] (optional: older bundles lack it)
        items.parquet       item_id, title, category_idx, price (row i = vector i)
        manifest.json       name, version, created, inputs/outputs, history_len, dim, price_bucket_edges_log,
                            item_tower, text, metrics, parity, files
    <registry>/ranker/CURRENT, <registry>/ranker/<version>/
        ranker.onnx         input "features" float32 [N, N_FEATURES] (shared.models.ranker_features rows)
                            -> output "score" float32 [N], higher ranks first
        item_stats.npz      popularity, recent_popularity, price, category, repeat_rate, covis_items,
                            covis_weights, first_popularity, recent_first_popularity (row i = items.parquet row i), text (float32
                            [n_items, 384] title vectors; optional), customer_ptr / customer_item /
                            customer_weight (the training customers' TIFU vectors, CSR; optional)
        items.parquet       item_id
        manifest.json       ..., feature_spec_version, feature_names, candidate sizes, parity, files

Both bundles of one export share the item order; ``load_retrieval_ranker`` refuses a pair that does not.
A ranker bundle of an older feature spec (``ranker-1``: 17 features, no text; ``ranker-2``: 18, before the
next-basket features) is refused with the spec mismatch (the registry's previous version, if any, serves); a retrieval bundle without ``item_tower.onnx``
loads with ``pipeline.item_tower = None``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.models.ranker_features import FEATURE_SPEC_VERSION, ItemStats
from strata.shared.models.ranker_neighbours import CustomerVectors
from strata.shared.models.retrieval_ranker import (
    CandidateSizes,
    ItemTowerModel,
    RankerModel,
    RetrievalRanker,
    UserTowerModel,
)

logger = logging.getLogger(__name__)

RETRIEVAL_MODEL = "retrieval"
RANKER_MODEL = "ranker"
USER_TOWER_FILE = "user_tower.onnx"
ITEM_TOWER_FILE = "item_tower.onnx"
RANKER_FILE = "ranker.onnx"
ITEM_STATS_FILE = "item_stats.npz"
RETRIEVAL_FILES = (USER_TOWER_FILE, B.ITEM_VECTORS_FILE, B.ITEMS_FILE)
RANKER_FILES = (RANKER_FILE, ITEM_STATS_FILE, B.ITEMS_FILE)
STATS_ARRAYS = ("popularity", "recent_popularity", "price", "category", "repeat_rate", "covis_items",
                "covis_weights", "first_popularity", "recent_first_popularity")
OPTIONAL_STATS_ARRAYS = ("text",)
CUSTOMER_ARRAYS = ("customer_ptr", "customer_item", "customer_weight")


def bundle_dir(registry: Path | str, model: str, version: str | None = None) -> Path:
    return Path(registry) / model / (version or B.read_current(registry, model))


def read_item_ids(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    try:
        return np.asarray(pq.read_table(path / B.ITEMS_FILE, columns=["item_id"]).column(0).to_pylist(), dtype=str)
    except Exception as exc:
        raise BundleError(f"cannot read {path / B.ITEMS_FILE}: {exc}") from exc


def item_stats_arrays(stats: ItemStats) -> dict[str, np.ndarray]:
    """What ``item_stats.npz`` holds for ``stats`` (the writer's side of ``read_item_stats``)."""
    out = {name: getattr(stats, name) for name in STATS_ARRAYS if getattr(stats, name) is not None}
    if stats.text is not None:
        out["text"] = stats.text.astype(np.float32)
    if stats.customers is not None:
        c = stats.customers
        out |= {"customer_ptr": c.ptr, "customer_item": c.item, "customer_weight": c.weight}
    return out


def read_item_stats(path: Path) -> ItemStats:
    try:
        with np.load(path / ITEM_STATS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in STATS_ARRAYS}
            arrays |= {name: npz[name] for name in OPTIONAL_STATS_ARRAYS if name in npz.files}
            customer = {name: npz[name] for name in CUSTOMER_ARRAYS if name in npz.files}
    except Exception as exc:
        raise BundleError(f"cannot read {path / ITEM_STATS_FILE}: {exc}") from exc
    n = arrays["popularity"].shape[0]
    if any(a.shape[0] != n for a in arrays.values()):
        raise BundleError(f"{path / ITEM_STATS_FILE}: arrays disagree on the number of items")
    customers = None
    if customer:
        ptr, item = customer.get("customer_ptr"), customer.get("customer_item")
        weight = customer.get("customer_weight")
        if ptr is None or item is None or weight is None or ptr.size < 1 or ptr[-1] != item.size \
                or weight.size != item.size or (item.size and (item.min() < 0 or item.max() >= n)):
            raise BundleError(f"{path / ITEM_STATS_FILE}: the customer vectors are inconsistent")
        customers = CustomerVectors(ptr.astype(np.int64), item.astype(np.int64), weight.astype(np.float32),
                                    n_items=n)
    return ItemStats(**arrays, customers=customers)


def versions(registry: Path | str, model: str) -> list[str]:
    """Every version directory of ``model``, oldest first."""
    root = Path(registry) / model
    found = [p.name for p in root.iterdir() if p.is_dir() and B.SEMVER.match(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def previous_version(registry: Path | str, model: str, version: str) -> str | None:
    """The highest version below ``version`` (the registry's previous model), if any."""
    older = [v for v in versions(registry, model) if _key(v) < _key(version)]
    return older[-1] if older else None


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def _ranker_model(k_dir: Path, ids: np.ndarray, threads: int) -> tuple[RankerModel, dict]:
    manifest = B.verify_bundle(k_dir, FEATURE_SPEC_VERSION, required=RANKER_FILES)
    if not np.array_equal(ids, read_item_ids(k_dir)):
        raise BundleError(f"{k_dir} lists other items than the retrieval bundle; export them together")
    return RankerModel(k_dir / RANKER_FILE, threads), manifest


def _item_tower(r_dir: Path, manifest: dict, threads: int) -> ItemTowerModel | None:
    if ITEM_TOWER_FILE not in manifest.get("files", {}):
        return None
    return ItemTowerModel(r_dir / ITEM_TOWER_FILE, np.asarray(manifest.get("price_bucket_edges_log", [])), threads)


def load_retrieval_ranker(registry: Path | str, retrieval_version: str | None = None,
                          ranker_version: str | None = None, threads: int = 1,
                          sizes: CandidateSizes | None = None, retrieval_model: str = RETRIEVAL_MODEL,
                          ranker_model: str = RANKER_MODEL) -> tuple[RetrievalRanker, np.ndarray, dict]:
    """(pipeline, item ids, {"retrieval": manifest, "ranker": manifest}) from verified bundles.

    The ranker's previous version (same items) is loaded too, as the first fallback when the current one
    fails at run time; when the current one cannot even be loaded, the previous one serves
    (``"ranker_fallback"`` in the returned dict says so). ``retrieval_model`` / ``ranker_model``: the
    registry's model names (the origin's ``origin.retrieval_model`` / ``origin.ranker_model``)."""
    r_dir = bundle_dir(registry, retrieval_model, retrieval_version)
    r_manifest = B.verify_bundle(r_dir, required=RETRIEVAL_FILES)
    ids = read_item_ids(r_dir)
    current = ranker_version or B.read_current(registry, ranker_model)
    k_dir = Path(registry) / ranker_model / current
    older = previous_version(registry, ranker_model, current)
    previous: RankerModel | None = None
    notes: dict = {}
    try:
        ranker, k_manifest = _ranker_model(k_dir, ids, threads)
    except BundleError as exc:
        if older is None:
            raise
        logger.warning("ranker %s unusable (%s); serving the previous version %s", current, exc.reason, older)
        k_dir = Path(registry) / ranker_model / older
        ranker, k_manifest = _ranker_model(k_dir, ids, threads)
        notes["ranker_fallback"] = {"failed": current, "serving": older, "reason": exc.reason}
        older = None
    if older is not None:
        try:
            previous, _ = _ranker_model(Path(registry) / ranker_model / older, ids, threads)
        except BundleError as exc:
            logger.warning("previous ranker %s not usable as a fallback: %s", older, exc.reason)
    try:
        vectors = np.load(r_dir / B.ITEM_VECTORS_FILE, allow_pickle=False)
    except Exception as exc:
        raise BundleError(f"cannot read {r_dir / B.ITEM_VECTORS_FILE}: {exc}") from exc
    stats = read_item_stats(k_dir)
    if vectors.shape[0] != ids.size or stats.n_items != ids.size:
        raise BundleError(f"{ids.size} items but {vectors.shape[0]} vectors and {stats.n_items} stats rows")
    if sizes is None:
        sizes = CandidateSizes(**k_manifest.get("candidates", {}))
    pipeline = RetrievalRanker(UserTowerModel(r_dir / USER_TOWER_FILE, threads), vectors, ranker, stats, sizes,
                               previous=previous, item_tower=_item_tower(r_dir, r_manifest, threads))
    return pipeline, ids, {"retrieval": r_manifest, "ranker": k_manifest, **notes}
