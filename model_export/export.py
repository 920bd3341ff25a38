"""One call from data to a verified bundle: world -> rows -> train -> ONNX -> parity -> int8 -> write.

``progress(step, fraction)`` receives the step name and the overall completion in [0, 1] (never
decreasing, ending with ("done", 1.0)) so a CLI can drive a single progress bar.
Torch is imported lazily (inside ``export_bundle``) so importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from strata.model_export import registry
from strata.model_export import vocabulary as vocab
from strata.model_export.covisitation import covisitation_table, write_covisitation
from strata.model_export.dataset import Dataset, build_dataset
from strata.model_export.evaluate import change, click_metrics, popularity_baseline
from strata.model_export.item_index import ship_item_index
from strata.model_export.parity import MIN_ROWS, check_parity, ort_predict
from strata.model_export.world import World, WorldConfig, generate_world
from strata.shared.contracts.api import CHANNELS
from strata.shared.models import bundle as layout
from strata.shared.ranking.features import EMBED_DIM, FEATURE_DIM, FEATURE_SPEC_VERSION, ITEM_DIM

if TYPE_CHECKING:
    from strata.model_export.serving_catalog import ServingCatalog
    from strata.model_export.train_scorer import TrainParams

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
PARITY_ROWS = 20_000


@dataclass(slots=True)
class ExportResult:
    bundle_dir: Path
    version: str
    metrics: dict
    seconds: float
    parity: dict = field(default_factory=dict)


def export_bundle(out: Path, *, seed: int = 7, n_items: int = 12_000, version: str | None = None,
                  int8: bool = True, progress: Progress | None = None, n_users: int = 3_000,
                  n_sessions: int = 40_000, epochs: int = 6, catalog: ServingCatalog | None = None) -> ExportResult:
    """Train the edge scorer on a synthetic world and write ``out/edge-scorer/<version>/``.

    With ``catalog`` the bundle serves that (real) catalog: its item tables, vectors and pools replace
    the world's; the click model is the same.

    Raises ParityError (and writes nothing) if onnxruntime disagrees with the torch model.
    """
    from strata.model_export import onnx_export
    from strata.model_export.train_scorer import TrainParams, predict, train_scorer

    t0 = time.perf_counter()
    report = progress or (lambda step, fraction: None)
    model_root = Path(out) / registry.MODEL_NAME
    version = registry.resolve_version(model_root, version)  # fail fast on a taken version
    report("world", 0.0)
    world = generate_world(WorldConfig(seed=seed, n_items=n_items, n_users=n_users, n_sessions=n_sessions))
    report("features", 0.15)
    data = build_dataset(world)
    report("train", 0.3)
    params = TrainParams(epochs=epochs, seed=seed)
    model = train_scorer(data.train.x, data.train.y, params,
                         on_epoch=lambda e, _loss: report("train", 0.3 + 0.45 * (e + 1) / params.epochs))
    parity_x = np.concatenate([data.test.x, data.train.x])[:max(PARITY_ROWS, MIN_ROWS)]
    with registry.staged_bundle(model_root, version) as staging:
        report("export", 0.78)
        model_path = onnx_export.to_onnx(model, staging / layout.MODEL_FILE)
        report("parity", 0.82)
        parity = check_parity(model_path, lambda x: predict(model, x), parity_x)
        report("evaluate", 0.86)
        metrics = _metrics(data, predict(model, data.test.x))
        if int8:
            report("int8", 0.9)
            metrics["int8"] = _int8(onnx_export, model_path, staging / layout.INT8_FILE, data, metrics)
        report("write", 0.94)
        if catalog is None:
            _write_tables(staging, world, data)
        else:
            _write_catalog(staging, catalog)
        manifest = _manifest(world, data, version, metrics, parity, params, onnx_export.op_types(model_path))
        if catalog is not None:
            manifest |= {"n_items": catalog.n_items, "serving_catalog": catalog.source}
        manifest = registry.write_manifest(staging, manifest)
        layout.verify_bundle(staging, FEATURE_SPEC_VERSION)  # the reader's check, before anyone can see it
        bundle_dir = registry.promote(staging, model_root, version)
    seconds = round(time.perf_counter() - t0, 3)
    report("done", 1.0)
    logger.info("exported %s in %.1fs: auc %.4f (popularity %.4f)", bundle_dir, seconds, metrics["auc"],
                metrics["baseline_popularity"]["auc"])
    # The result carries the parity figures next to the metrics so a summary can show both at once.
    return ExportResult(bundle_dir, version, {**manifest["metrics"], "parity": parity}, seconds, parity)


def _metrics(data: Dataset, p_test: np.ndarray) -> dict:
    scorer = click_metrics(data.test.y, p_test)
    base = popularity_baseline(data.train.x, data.train.y, data.test.x, data.test.y)
    return {
        **scorer,
        "baseline_popularity": base,
        "lift_over_popularity": change(scorer, base),
        "oracle": click_metrics(data.test.y, data.test.p_true),
        "rows_train": len(data.train),
        "rows_test": len(data.test),
        "ctr_train": round(float(data.train.y.mean()), 6),
        "ctr_test": round(float(data.test.y.mean()), 6),
    }


def _int8(onnx_export: ModuleType, src: Path, dst: Path, data: Dataset, metrics: dict) -> dict:
    """Quantise and record the accuracy change; the variant is dropped (not shipped) if quantisation fails."""
    try:
        onnx_export.to_int8(src, dst)
        p8 = ort_predict(dst, data.test.x)
    except Exception as exc:  # the fp32 bundle is still good; record why there is no int8 file
        logger.warning("int8 variant skipped: %s", exc)
        dst.unlink(missing_ok=True)
        return {"error": f"{type(exc).__name__}: {exc}"}
    m8 = click_metrics(data.test.y, p8)
    fp32 = {k: metrics[k] for k in ("auc", "logloss")}
    return {**m8, **change(m8, fp32),
            "max_abs_diff_vs_fp32": float(np.max(np.abs(p8 - ort_predict(src, data.test.x)))),
            "bytes": dst.stat().st_size, "bytes_fp32": src.stat().st_size}


def _write_tables(staging: Path, world: World, data: Dataset) -> None:
    cat, tables = world.catalog, data.serving
    names = np.array([c.name for c in vocab.CATEGORIES])
    registry.write_items(staging / layout.ITEMS_FILE, {
        "item_id": cat.item_id, "category": names[cat.category], "category_idx": cat.category.astype(np.int32),
        "brand": np.array(cat.brand_names)[cat.brand], "price": cat.price, "title": cat.title,
        "age_restricted": cat.age_restricted.astype(np.int8), "popularity": tables.popularity,
    })
    np.save(staging / layout.ITEM_FEATURES_FILE, tables.item_features)
    np.save(staging / layout.ITEM_VECTORS_FILE, tables.item_vectors)
    by_channel = {ch: tables.channel_popularity[i] for i, ch in enumerate(CHANNELS)}
    registry.write_json(staging / layout.POOLS_FILE, registry.top_pools(cat.item_id, tables.popularity, by_channel))
    write_covisitation(staging, *covisitation_table(world.sessions.ev_session, world.sessions.ev_item, len(cat)))
    ship_item_index(staging, cat.item_id, names[cat.category], cat.age_restricted, tables.item_vectors)


def _write_catalog(staging: Path, catalog: ServingCatalog) -> None:
    registry.write_items(staging / layout.ITEMS_FILE, catalog.columns)
    np.save(staging / layout.ITEM_FEATURES_FILE, catalog.item_features.astype(np.float32))
    np.save(staging / layout.ITEM_VECTORS_FILE, catalog.item_vectors.astype(np.float32))
    registry.write_json(staging / layout.POOLS_FILE, catalog.pools)


def _manifest(world: World, data: Dataset, version: str, metrics: dict, parity: dict, params: TrainParams,
              ops: list[str]) -> dict:
    import torch

    cfg = world.config
    return {
        "name": registry.MODEL_NAME,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "inputs": [{"name": layout.INPUT_NAME, "dtype": "float32", "shape": ["N", FEATURE_DIM]}],
        "outputs": [{"name": layout.OUTPUT_NAME, "dtype": "float32", "shape": ["N"]}],
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "item_dim": ITEM_DIM,
        "embed_dim": EMBED_DIM,
        "n_items": len(world.catalog),
        "data_fingerprint": world.fingerprint(),
        "data": {"source": "synthetic-world", "seed": cfg.seed, "n_items": cfg.n_items, "n_users": cfg.n_users,
                 "n_sessions": cfg.n_sessions, "impressions": int(world.sessions.imp_item.size),
                 "events": int(world.sessions.ev_type.size), "session_windows": data.windows},
        "metrics": metrics,
        "parity": parity,
        "training": {**params.to_dict(), "model": f"mlp {FEATURE_DIM}-{params.hidden}-1 sigmoid",
                     "framework": f"torch {torch.__version__}",
                     "exporter": "torch.onnx.export (TorchScript, dynamo=False)", "graph_ops": ops},
    }
