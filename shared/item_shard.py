"""A Qdrant Edge shard of item vectors, built (HNSW included) at export time and shipped in a bundle.

``optimize()`` (the HNSW build) takes tens of seconds for 100k points on this machine while opening a
built shard takes well under a second, so the exporter builds it once and a serving process opens a copy:
the bundle holds the shard as one tar (one file, so the manifest's sha256 covers all of it), and each
process unpacks it into its own directory (a shard has exactly one opener). The tar leaves out the
write-ahead log (two preallocated 32 MB files of a flushed, closed shard; ``load`` starts a new one) and is
not compressed: gunzip was most of the open (100k x 64-d: 166 MB out of a 33 MB gzip-1 tar took 0.74 s of a
1.1 s open; the plain tar unpacks in ~0.1 s), at the price of a bigger bundle (the engine preallocates
mostly-zero pages). A gzip tar of an older bundle still opens (``tarfile`` detects it).

Without its log the shard's operation counter restarts at 0 when opened, while every shipped point carries
the (higher) number of the operation that wrote it, and Qdrant ignores an update older than the point: an
upsert of a shipped point (new stock, new payload) or its deletion silently did nothing. So the build
records its last operation number (``SHIPPED_FILE`` in the tar) and ``open_shipped_shard`` first moves the
new counter past it with as many no-op deletes (~1 ms for a hundred).

Payload per item (the fields the candidate sources filter on): ``category`` (keyword), ``in_stock`` and
``age_restricted`` (0/1 integers, never bools: ``shared.vector_index``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.errors import BundleError
from shared.vector_index import SHARD_DIR, EdgeVectorIndex, FieldType, IndexPoint

logger = logging.getLogger(__name__)

ITEM_FIELDS: dict[str, FieldType] = {"category": "keyword", "in_stock": "integer", "age_restricted": "integer"}
BATCH = 2000
WAL_DIR = "wal"
SHIPPED_FILE = "shipped.json"      # {"last_op": the build's last operation number}
_NO_POINT = "strata:no-such-point"


def item_payload(category: str, in_stock: bool | int, age_restricted: bool | int) -> dict[str, int | str]:
    return {"category": category, "in_stock": int(bool(in_stock)), "age_restricted": int(bool(age_restricted))}


def build_shipped_shard(tar_path: Path | str, keys: Sequence[str], vectors: np.ndarray,
                        payloads: Sequence[dict], m: int = 16, ef_construct: int = 100,
                        unindexed: Sequence[IndexPoint] = ()) -> dict:
    """Index ``vectors`` under ``keys`` with ``payloads``, build the HNSW graph (``m`` links per node,
    ``ef_construct``), then add the ``unindexed`` points outside the graph (searched by a scan: items placed
    at their category's centroid are thousands of identical vectors, which a graph links badly), and write
    the closed shard to ``tar_path``. Returns what it took (points, seconds, bytes) for the manifest."""
    if not (len(keys) == vectors.shape[0] == len(payloads)):
        raise BundleError(f"shard inputs disagree: {len(keys)} keys, {vectors.shape[0]} vectors, "
                          f"{len(payloads)} payloads")
    work = Path(tempfile.mkdtemp(prefix="strata-shard-build-"))
    try:
        t0 = time.perf_counter()
        index = EdgeVectorIndex.create(work / "index", int(vectors.shape[1]), ITEM_FIELDS, m=m,
                                       ef_construct=ef_construct)
        try:
            for lo in range(0, len(keys), BATCH):
                index.upsert([IndexPoint(keys[i], vectors[i], payloads[i])
                              for i in range(lo, min(lo + BATCH, len(keys)))])
            t1 = time.perf_counter()
            index.optimize()
            t2 = time.perf_counter()
            for lo in range(0, len(unindexed), BATCH):
                index.upsert(unindexed[lo:lo + BATCH])
        finally:
            index.close()
        last_op = _last_op(work / "index")
        (work / "index" / SHIPPED_FILE).write_text(json.dumps({"last_op": last_op}))
        with tarfile.open(tar_path, "w") as tar:
            tar.add(work / "index", arcname="index", filter=_without_wal)
        stats = {"points": len(keys), "unindexed": len(unindexed), "dim": int(vectors.shape[1]), "fields": ITEM_FIELDS,
                 "upsert_s": round(t1 - t0, 2), "optimize_s": round(t2 - t1, 2),
                 "bytes": Path(tar_path).stat().st_size, "last_op": last_op, "hnsw_m": m,
                 "hnsw_ef_construct": ef_construct}
        logger.info("shipped shard built: %s", stats)
        return stats
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _without_wal(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if f"/{WAL_DIR}/" in info.name else info


def open_shipped_shard(tar_path: Path | str, dest: Path | str) -> EdgeVectorIndex:
    """Unpack the shipped shard into ``dest`` (a directory this process owns) and open it there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"cannot unpack shard {tar_path}: {exc}") from exc
    index = EdgeVectorIndex.open(dest / "index")
    try:
        shipped = dest / "index" / SHIPPED_FILE
        last_op = json.loads(shipped.read_text())["last_op"] if shipped.is_file() else None
        if last_op is None:         # a tar built before the counter was recorded: one op per batch, plus margin
            last_op = index.count() // BATCH + 64
        for _ in range(int(last_op) + 1):
            index.delete([_NO_POINT])
    except Exception:
        index.close()
        raise
    return index


def _last_op(index_dir: Path) -> int:
    """The closed shard's last acknowledged operation number (its log's ``first-index`` file)."""
    try:
        return int(json.loads((index_dir / SHARD_DIR / WAL_DIR / "first-index").read_text())["ack_index"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"cannot read the shard's operation counter in {index_dir}: {exc}") from exc
