"""Model bundle layout, shared by the writer (model_export) and every serving tier.

    <registry>/<model>/CURRENT              one line: the live version (semver)
    <registry>/<model>/<version>/
        model.onnx          input "features" float32 [N, FEATURE_DIM] -> output "p_click" float32 [N]
        model.int8.onnx     optional dynamic-int8 variant (accuracy change recorded in the manifest)
        items.parquet       item_id, category, category_idx, brand, price, title, age_restricted, popularity
        item_features.npy   float32 [n_items, ITEM_DIM]   (row i belongs to items.parquet row i)
        item_vectors.npy    float32 [n_items, EMBED_DIM]  L2-normalised item embeddings
        pools.json          {"<segment>": [item_id, ...]}  popular items per segment ("default" always present)
        covis_neighbors.npy optional: int32 [n_items, top_n] items co-occurring in sessions, best first
                            (rows of items.parquet, -1 padded; ``model_export.covisitation``)
        covis_scores.npy    optional: float32 [n_items, top_n] their scores in [0, 1]
        item_index.tar      optional: Qdrant Edge shard (HNSW built) of the non-zero item vectors
                            (``shared.models.item_shard``); item_index.json says which item_vectors.npy (sha256)
        manifest.json       name, version, created, inputs/outputs, feature_spec_version,
                            data_fingerprint, metrics, files {name: sha256}
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from strata.shared.errors import BundleError

MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ITEMS_FILE = "items.parquet"
ITEM_FEATURES_FILE = "item_features.npy"
ITEM_VECTORS_FILE = "item_vectors.npy"
POOLS_FILE = "pools.json"
COVIS_NEIGHBORS_FILE = "covis_neighbors.npy"
COVIS_SCORES_FILE = "covis_scores.npy"
ITEM_INDEX_FILE = "item_index.tar"
ITEM_INDEX_META_FILE = "item_index.json"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
REQUIRED_FILES = (MODEL_FILE, ITEMS_FILE, ITEM_FEATURES_FILE, ITEM_VECTORS_FILE, POOLS_FILE)
INPUT_NAME = "features"
OUTPUT_NAME = "p_click"
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")   # X.Y.Z, the only version format of the registry


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_current(registry: Path | str, model: str) -> str:
    path = Path(registry) / model / CURRENT_FILE
    try:
        version = path.read_text().strip()
    except FileNotFoundError:
        raise BundleError(f"no {CURRENT_FILE} pointer at {path}: no {model} bundle in {registry} "
                          f"(strata export --out {registry} makes one)", field="registry") from None
    if not SEMVER.match(version):
        raise BundleError(f"{path} names {version!r}, not a semver version", field="CURRENT")
    return version


def verify_bundle(bundle_dir: Path | str, feature_spec_version: str | None = None,
                  required: tuple[str, ...] = REQUIRED_FILES) -> dict:
    """Load manifest.json and check every listed file's sha256 (``required``: files the manifest must list;
    the edge scorer's by default). Returns the manifest."""
    bundle_dir = Path(bundle_dir)
    try:
        manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise BundleError(f"missing {MANIFEST_FILE} in {bundle_dir}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{bundle_dir / MANIFEST_FILE} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{bundle_dir / MANIFEST_FILE} must be an object with a 'files' object")
    files = manifest["files"]
    for name in required:
        if name not in files:
            raise BundleError(f"manifest of {bundle_dir} does not list required file {name}")
    for name, digest in files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"{path} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise BundleError(f"checksum mismatch for {path}: manifest {digest[:12]}, file {actual[:12]}")
    if feature_spec_version and manifest.get("feature_spec_version") != feature_spec_version:
        raise BundleError(
            f"bundle feature spec {manifest.get('feature_spec_version')!r} != serving spec {feature_spec_version!r}"
        )
    return manifest


def read_item_arrays(bundle_dir: Path | str, columns: list[str] | None = None):
    """A verified bundle's item table (``columns``, or all) with its feature rows, item vectors and pools,
    shapes checked against the table. Raises BundleError on anything unreadable or mismatched."""
    import numpy as np
    import pyarrow.parquet as pq

    from strata.shared.ranking.features import EMBED_DIM, ITEM_DIM

    path = Path(bundle_dir)
    try:
        table = pq.read_table(path / ITEMS_FILE, columns=columns)
        feats = np.load(path / ITEM_FEATURES_FILE, allow_pickle=False)
        vecs = np.load(path / ITEM_VECTORS_FILE, allow_pickle=False)
        pools = json.loads((path / POOLS_FILE).read_text())
    except Exception as exc:
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    n = table.num_rows
    if feats.shape != (n, ITEM_DIM) or vecs.shape != (n, EMBED_DIM):
        raise BundleError(f"bundle {path}: item arrays {feats.shape}/{vecs.shape} do not match {n} items")
    return table, feats, vecs, pools


def age_restricted_flags(table):
    """bool per item; an item whose flag is missing counts as age-restricted (guardrails err on the safe side)."""
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(table.column("age_restricted"), 1).to_numpy(zero_copy_only=False), dtype=bool)
