"""Write the ``retrieval`` (two-tower) and ``ranker`` bundles from any ``PurchaseDataset``.

Models train on ALL the dataset's baskets (serving wants the freshest data; offline evaluation is where
a split belongs), the ONNX files pass the parity gate on real inputs inside the staging directory, and
each bundle is promoted only when complete (``registry.staged_bundle`` / ``promote``), so a failed
export leaves no version and ``CURRENT`` untouched. Layout: ``shared.models.ranker_bundle``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from strata.model_export import registry
from strata.model_export.datasets.interface import PurchaseDataset
from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.export import ExportResult
from strata.model_export.item_index import ship_item_index
from strata.model_export.retail_models import (
    StrataParams,
    TrainedModels,
    parity_inputs,
    train_models,
    write_onnx,
)
from strata.model_export.two_tower import HISTORY_INPUT, ITEM_OUTPUT, USER_OUTPUT
from strata.shared.models import bundle as B
from strata.shared.models import ranker_bundle as RB
from strata.shared.models.ranker_features import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES
from strata.shared.models.retrieval_ranker import FEATURES_INPUT, SCORE_OUTPUT

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
# The item tower's vectors of items nobody bought are near-duplicates per category and price bucket (82% of
# a 100k-item synthetic world), and the default graph (m 16, ef_construct 100) leaves those clusters badly
# connected: recall@500 0.75-0.89 with single queries at 0. A denser graph, searched with a wide beam
# (origin.tower_ef), measured 0.98 (README, Origin tier); it costs ~40 s of export at 100k items.
TOWER_HNSW_M = 64
TOWER_HNSW_EF_CONSTRUCT = 400


TRAIN_THREADS = 2   # torch's threads for the two-tower and ranker training, unless OMP_NUM_THREADS says otherwise


def train_threads() -> int:
    """``OMP_NUM_THREADS`` when set (a positive integer), else ``TRAIN_THREADS``: a host running other work (a
    parallel test lane, other exports) caps training to one thread, so parallel trainings do not oversubscribe
    its cores."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else TRAIN_THREADS


def export_retail_bundles(out: Path | str, dataset: PurchaseDataset, params: StrataParams = StrataParams(),
                          version: str | None = None, progress: Progress | None = None) -> list[ExportResult]:
    """Train on ``dataset`` and write ``out/retrieval/<v>/`` and ``out/ranker/<v>/`` (one version each)."""
    import torch

    t0 = time.perf_counter()
    report = progress or (lambda step, fraction: None)
    out = Path(out)
    roots = {m: out / m for m in (RB.RETRIEVAL_MODEL, RB.RANKER_MODEL)}
    versions = {m: registry.resolve_version(root, version) for m, root in roots.items()}
    report("data", 0.0)
    baskets = dataset.baskets()
    report("train", 0.1)
    torch.set_num_threads(train_threads())
    models = train_models(baskets, params, text_registry=out)
    report("parity", 0.8)
    hist, rows = parity_inputs(baskets, models, params.sizes, params.parity_min_rows)
    results = []
    staging_parity: dict = {}
    with registry.staged_bundle(roots[RB.RETRIEVAL_MODEL], versions[RB.RETRIEVAL_MODEL]) as r_stage, \
            registry.staged_bundle(roots[RB.RANKER_MODEL], versions[RB.RANKER_MODEL]) as k_stage:
        staging_parity = write_onnx(models, r_stage, rows, params.parity_min_rows, hist)
        (r_stage / RB.RANKER_FILE).replace(k_stage / RB.RANKER_FILE)
        report("write", 0.9)
        source = dataset.describe()
        _write_retrieval(r_stage, baskets, models, versions[RB.RETRIEVAL_MODEL], source, staging_parity,
                         dataset.item_labels(baskets.catalog))
        _write_ranker(k_stage, baskets, models, versions[RB.RANKER_MODEL], source, staging_parity, params)
        for model, stage, files in ((RB.RETRIEVAL_MODEL, r_stage, (*RB.RETRIEVAL_FILES, RB.ITEM_TOWER_FILE)),
                                    (RB.RANKER_MODEL, k_stage, RB.RANKER_FILES)):
            manifest = B.verify_bundle(stage, required=files)
            path = registry.promote(stage, roots[model], versions[model])
            results.append(ExportResult(path, versions[model], manifest.get("metrics", {}),
                                        round(time.perf_counter() - t0, 3), staging_parity[_parity_key(model)]))
    report("done", 1.0)
    return results


def _parity_key(model: str) -> str:  # the user tower's gate stands for the retrieval bundle's summary
    return "user_tower" if model == RB.RETRIEVAL_MODEL else "ranker"


def _items(baskets: Baskets, extra: bool) -> dict[str, np.ndarray]:
    cat = baskets.catalog
    columns = {"item_id": cat.item_id.astype(str)}
    if extra:
        columns |= {"title": cat.title.astype(str), "category_idx": cat.category.astype(np.int32),
                    "price": cat.price.astype(np.float64)}
    return columns


def _common(name: str, version: str, source: dict, models: TrainedModels) -> dict:
    import torch

    return {"name": name, "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "n_items": models.stats.n_items, "data": source,
            "training": {**models.info, "framework": f"torch {torch.__version__}",
                         "exporter": "torch.onnx.export (TorchScript, dynamo=False)"}}


def _write_retrieval(stage: Path, baskets: Baskets, models: TrainedModels, version: str, source: dict,
                     parity: dict, labels: tuple[np.ndarray, np.ndarray]) -> None:
    towers = models.towers
    np.save(stage / B.ITEM_VECTORS_FILE, towers.item_vectors.astype(np.float32))
    ship_tower_index(stage, baskets.catalog.item_id.astype(str), *labels)
    registry.write_items(stage / B.ITEMS_FILE, _items(baskets, extra=True))
    manifest = _common(RB.RETRIEVAL_MODEL, version, source, models) | {
        "inputs": [{"name": HISTORY_INPUT, "dtype": "int64", "shape": ["N", towers.params.history_len]}],
        "outputs": [{"name": USER_OUTPUT, "dtype": "float32", "shape": ["N", towers.params.dim]}],
        "history_len": towers.params.history_len, "dim": towers.params.dim, "pad": models.stats.n_items,
        "price_bucket_edges_log": [float(e) for e in towers.price_edges],
        "item_tower": {"file": RB.ITEM_TOWER_FILE,
                       "inputs": [{"name": "item", "dtype": "int64", "shape": ["N"], "unknown": -1},
                                  {"name": "category", "dtype": "int64", "shape": ["N"], "unknown": -1},
                                  {"name": "price_bucket", "dtype": "int64", "shape": ["N"]},
                                  {"name": "text", "dtype": "float32", "shape": ["N", towers.model.text_dim]}],
                       "outputs": [{"name": ITEM_OUTPUT, "dtype": "float32", "shape": ["N", towers.params.dim]}],
                       "n_categories": towers.model.n_categories, "parity": parity["item_tower"]},
        "text": models.info.get("text"),
        "params": towers.params.to_dict(), "metrics": {"final_loss": towers.final_loss, "pairs": towers.pairs},
        "parity": parity["user_tower"],
    }
    registry.write_manifest(stage, manifest)


def ship_tower_index(stage: Path, item_ids: np.ndarray, categories: np.ndarray, age_restricted: np.ndarray) -> dict:
    """The item vectors' ANN shard (HNSW built here: tens of seconds at 100k items, opened in well under a
    second by the origin), with the payload it was built with recorded in ``item_index.json`` so the origin
    re-labels only the items its catalog describes otherwise (``origin.tower_index``)."""
    vectors = np.load(stage / B.ITEM_VECTORS_FILE)
    meta = ship_item_index(stage, item_ids, categories, age_restricted, vectors, m=TOWER_HNSW_M,
                           ef_construct=TOWER_HNSW_EF_CONSTRUCT)
    names, idx = np.unique(categories.astype(str), return_inverse=True)
    meta["payload"] = {"category_names": names.tolist(), "category": idx.astype(int).tolist(),
                       "age_restricted": age_restricted.astype(int).tolist(), "in_stock": 1}
    registry.write_json(stage / B.ITEM_INDEX_META_FILE, meta)
    return meta


def _write_ranker(stage: Path, baskets: Baskets, models: TrainedModels, version: str, source: dict,
                  parity: dict, params: StrataParams) -> None:
    np.savez(stage / RB.ITEM_STATS_FILE, **RB.item_stats_arrays(models.stats))
    registry.write_items(stage / B.ITEMS_FILE, _items(baskets, extra=False))
    manifest = _common(RB.RANKER_MODEL, version, source, models) | {
        "inputs": [{"name": FEATURES_INPUT, "dtype": "float32", "shape": ["N", N_FEATURES]}],
        "outputs": [{"name": SCORE_OUTPUT, "dtype": "float32", "shape": ["N"]}],
        "feature_spec_version": FEATURE_SPEC_VERSION, "feature_names": list(FEATURE_NAMES),
        "candidates": {"tower": params.sizes.tower, "covis": params.sizes.covis, "past": params.sizes.past,
                       "popular": params.sizes.popular},
        "params": models.ranker.params.to_dict(),
        "metrics": {"final_loss": models.ranker.final_loss, "queries": models.ranker.queries,
                    "rows": models.ranker.rows},
        "parity": parity["ranker"],
    }
    registry.write_manifest(stage, manifest)
