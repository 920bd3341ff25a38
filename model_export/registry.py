"""Registry writer: versioned bundles laid out exactly as ``shared/models/bundle.py`` describes.

A bundle is built in a staging directory INSIDE the model's registry folder (same filesystem, so the
final ``os.replace`` is atomic) and only promoted after every check passed; a failed export leaves no
version directory behind and ``CURRENT`` untouched. ``CURRENT`` itself is replaced atomically (tmp file +
fsync + ``os.replace``) so pollers never read a half-written pointer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from strata.shared.errors import BundleError
from strata.shared.models.bundle import CURRENT_FILE, MANIFEST_FILE, SEMVER, sha256_file

logger = logging.getLogger(__name__)

MODEL_NAME = "edge-scorer"
POOL_SIZE = 500
STAGING_PREFIX = ".staging-"


def _parse(version: str) -> tuple[int, int, int]:
    m = SEMVER.match(version)
    if not m:
        raise BundleError(f"must look like X.Y.Z, got {version!r}", field="version")
    return int(m[1]), int(m[2]), int(m[3])


def existing_versions(model_root: Path) -> list[str]:
    if not model_root.is_dir():
        return []
    found = [p.name for p in model_root.iterdir() if p.is_dir() and SEMVER.match(p.name)]
    return sorted(found, key=_parse)


def resolve_version(model_root: Path, version: str | None) -> str:
    """The requested version, or the next patch after the highest existing one (first is 1.0.0)."""
    if version is None:
        versions = existing_versions(model_root)
        if not versions:
            return "1.0.0"
        major, minor, patch = _parse(versions[-1])
        return f"{major}.{minor}.{patch + 1}"
    _parse(version)
    if (model_root / version).exists():
        raise BundleError(f"{model_root / version} already exists; versions are immutable", field="version")
    return version


@contextmanager
def staged_bundle(model_root: Path, version: str) -> Iterator[Path]:
    """A private directory to build the bundle in; removed if anything inside the block raises."""
    model_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=model_root))
    staging.chmod(0o755)  # mkdtemp makes it private; serving processes may run as another user
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if staging.exists():  # not promoted: a caller left the block without promote(); clean up
        shutil.rmtree(staging, ignore_errors=True)


def write_items(path: Path, columns: dict[str, np.ndarray]) -> None:
    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    pq.write_table(table, path, compression="zstd")


def top_pools(item_ids: np.ndarray, popularity: np.ndarray, by_segment: dict[str, np.ndarray],
              size: int = POOL_SIZE) -> dict[str, list[str]]:
    """Top ``size`` item ids per segment by the segment's clicks, ties by overall clicks then catalog order."""
    idx = np.arange(item_ids.shape[0])
    pools = {}
    for segment, counts in {**by_segment, "default": popularity}.items():
        order = np.lexsort((idx, -popularity, -counts))[:size]
        pools[segment] = [str(i) for i in item_ids[order]]
    return pools


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_manifest(staging: Path, manifest: dict) -> dict:
    """Add the sha256 of every other file in the bundle and write manifest.json last."""
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    manifest = {**manifest, "files": files}
    write_json(staging / MANIFEST_FILE, manifest)
    return manifest


def promote(staging: Path, model_root: Path, version: str) -> Path:
    """Move the finished bundle into place, then point CURRENT at it."""
    final = model_root / version
    try:
        os.replace(staging, final)
    except OSError as exc:
        raise BundleError(f"cannot move bundle into {final}: {exc}", field="version") from exc
    write_current(model_root, version)
    logger.info("bundle %s promoted; CURRENT -> %s", final, version)
    return final


def write_current(model_root: Path, version: str) -> None:
    _parse(version)
    fd, tmp = tempfile.mkstemp(prefix=f".{CURRENT_FILE}-", dir=model_root)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, model_root / CURRENT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["MODEL_NAME", "existing_versions", "promote", "resolve_version", "staged_bundle",
           "top_pools", "write_current", "write_items", "write_json", "write_manifest"]
