"""A Qdrant Edge shard of item vectors, built (HNSW included) at export time and shipped in a bundle.

``optimize()`` (the HNSW build) takes tens of seconds for 100k points on this machine while opening a
built shard takes well under a second, so the exporter builds it once and a serving process opens a copy:
the bundle holds the shard as one tar (one file, so the manifest's sha256 covers all of it), and each
process unpacks it into its own directory (a shard has exactly one opener). The tar leaves out the
write-ahead log (two preallocated 32 MB files of a flushed, closed shard; ``load`` starts a new one) and is
not compressed: gunzip was most of the open (100k x 64-d: 166 MB out of a 33 MB gzip-1 tar took 0.74 s of a
1.1 s open). The engine preallocates mostly-zero pages, so each file goes in without its trailing zero bytes
and ``SHIPPED_FILE`` records its real size; the open extends it again with ``truncate`` (zeros that are
never written). 100k x 64-d: 136 MB of files, a 55 MB tar. A gzip tar of an older bundle still opens
(``tarfile`` detects it; it records no cut files).

Without its log the shard's operation counter restarts at 0 when opened, while every shipped point carries
the (higher) number of the operation that wrote it, and Qdrant ignores an update older than the point: an
upsert of a shipped point (new stock, new payload) or its deletion silently did nothing. So the build
records its last operation number (``SHIPPED_FILE`` in the tar) and ``open_shipped_shard`` first moves the
new counter past it with as many no-op deletes (~1 ms for a hundred).

Payload per item (the fields the candidate sources filter on): ``category`` (keyword), ``in_stock`` and
``age_restricted`` (0/1 integers, never bools: ``shared.models.vector_index``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models.vector_index import SHARD_DIR, EdgeVectorIndex, FieldType, IndexPoint

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
        _pack(work / "index", Path(tar_path), last_op)
        stats = {"points": len(keys), "unindexed": len(unindexed), "dim": int(vectors.shape[1]), "fields": ITEM_FIELDS,
                 "upsert_s": round(t1 - t0, 2), "optimize_s": round(t2 - t1, 2),
                 "bytes": Path(tar_path).stat().st_size, "last_op": last_op, "hnsw_m": m,
                 "hnsw_ef_construct": ef_construct}
        logger.info("shipped shard built: %s", stats)
        return stats
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pack(index_dir: Path, tar_path: Path, last_op: int) -> None:
    """A plain tar of ``index_dir`` as ``index/...`` without the log, each file without its trailing zero
    bytes; ``SHIPPED_FILE`` records the build's last operation and every cut file's real size."""
    files = sorted(p for p in index_dir.rglob("*") if WAL_DIR not in p.relative_to(index_dir).parts)
    data: dict[Path, bytes] = {}
    tails: dict[str, int] = {}
    for p in files:
        if p.is_file():
            raw = p.read_bytes()
            data[p] = raw.rstrip(b"\0")
            if len(data[p]) < len(raw):
                tails[p.relative_to(index_dir).as_posix()] = len(raw)
    shipped = index_dir / SHIPPED_FILE
    shipped.write_text(json.dumps({"last_op": last_op, "zero_tails": tails}))
    data[shipped] = shipped.read_bytes()
    with tarfile.open(tar_path, "w") as tar:
        tar.add(index_dir, arcname="index", recursive=False)
        for p in [*files, shipped]:
            info = tar.gettarinfo(p, arcname=f"index/{p.relative_to(index_dir).as_posix()}")
            if p in data:
                info.size = len(data[p])
                tar.addfile(info, io.BytesIO(data[p]))
            else:
                tar.addfile(info)


def _restore_tails(index_dir: Path, tails: dict) -> None:
    """Give each cut file its zero tail back (``truncate`` extends with zeros, unwritten: a sparse tail)."""
    root = index_dir.resolve()
    for rel, size in tails.items():
        path = (index_dir / rel).resolve()
        if root not in path.parents or not path.is_file():
            raise BundleError(f"shipped shard names a file outside it or missing: {rel!r}")
        if path.stat().st_size < int(size):
            os.truncate(path, int(size))


def open_shipped_shard(tar_path: Path | str, dest: Path | str) -> EdgeVectorIndex:
    """Unpack the shipped shard into ``dest`` (a directory this process owns) and open it there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="data")
        shipped = dest / "index" / SHIPPED_FILE
        info = json.loads(shipped.read_text()) if shipped.is_file() else {}
        _restore_tails(dest / "index", info.get("zero_tails", {}))
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise BundleError(f"cannot unpack shard {tar_path}: {exc}") from exc
    index = EdgeVectorIndex.open(dest / "index")
    try:
        last_op = info.get("last_op")
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
