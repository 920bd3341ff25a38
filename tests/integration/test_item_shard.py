"""The HNSW shard shipped in the text-encoder bundle (real Qdrant Edge): it opens from the bundle, answers
like a shard freshly built from the same vectors, carries no write-ahead log, and every process can open
its own copy at once."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from strata.shared.models import bundle as B
from strata.shared.models import text_encoder as T
from strata.shared.models.item_shard import ITEM_FIELDS, WAL_DIR, open_shipped_shard
from strata.shared.models.vector_index import EdgeVectorIndex, IndexPoint, PayloadFilter


@pytest.fixture(scope="module")
def bundle(text_registry_dir: Path) -> Path:
    return text_registry_dir / T.TEXT_MODEL / B.read_current(text_registry_dir, T.TEXT_MODEL)


def _fresh(bundle: Path, path: Path, registry: Path) -> EdgeVectorIndex:
    ids = [str(i) for i in pq.read_table(bundle / T.ITEM_TEXT_FILE).column("item_id").to_pylist()]
    vecs = np.load(bundle / T.ITEM_TEXT_VECTORS_FILE)
    items = pq.read_table(registry / "edge-scorer" / B.read_current(registry, "edge-scorer") / B.ITEMS_FILE)
    facts = {str(i): (str(c), int(a)) for i, c, a in zip(items.column("item_id").to_pylist(),
                                                          items.column("category").to_pylist(),
                                                          items.column("age_restricted").to_pylist(), strict=True)}
    index = EdgeVectorIndex.create(path, vecs.shape[1], ITEM_FIELDS)
    index.upsert([IndexPoint(k, vecs[i], {"category": facts[k][0], "in_stock": 1, "age_restricted": facts[k][1]})
                  for i, k in enumerate(ids)])
    index.optimize()
    return index


def _ranked(hits) -> list[tuple[float, str]]:
    """Hits in score order, equal scores (items with the same title) by key: tie order is the engine's."""
    return sorted((-round(h.score, 5), h.key) for h in hits)


def test_shipped_shard_answers_like_a_freshly_built_one(bundle: Path, text_registry_dir: Path, tmp_path: Path) -> None:
    shipped = open_shipped_shard(bundle / T.TEXT_INDEX_FILE, tmp_path / "shipped")
    fresh = _fresh(bundle, tmp_path / "fresh", text_registry_dir)
    try:
        assert shipped.count() == fresh.count() == 2000
        flt = PayloadFilter(equals={"in_stock": 1, "age_restricted": 0}, none_of={"category": ["wine"]})
        assert shipped.count(flt) == fresh.count(flt) > 0
        rng = np.random.default_rng(3)
        vecs = np.load(bundle / T.ITEM_TEXT_VECTORS_FILE)
        for q in vecs[rng.choice(vecs.shape[0], 20, replace=False)]:
            for f in (None, flt):
                a = _ranked(shipped.search(q, 20, f, ef=400))
                b = _ranked(fresh.search(q, 20, f, ef=400))
                assert [s for s, _ in a] == [s for s, _ in b]
                last = a[-1][0]           # items tied at the cut-off may be either of the equals
                assert [x for x in a if x[0] < last] == [x for x in b if x[0] < last]
    finally:
        shipped.close()
        fresh.close()


def test_the_tar_has_no_wal_and_two_copies_open_at_once(bundle: Path, tmp_path: Path) -> None:
    with tarfile.open(bundle / T.TEXT_INDEX_FILE) as tar:
        names = tar.getnames()
    assert any(n.endswith("/segments") for n in names)
    assert not any(f"/{WAL_DIR}/" in n for n in names)
    a = open_shipped_shard(bundle / T.TEXT_INDEX_FILE, tmp_path / "a")
    b = open_shipped_shard(bundle / T.TEXT_INDEX_FILE, tmp_path / "b")
    try:
        v = np.load(bundle / T.ITEM_TEXT_VECTORS_FILE)[7]
        assert a.search(v, 1)[0].key == b.search(v, 1)[0].key
        a.upsert([IndexPoint("NEW", v, {"category": "x", "in_stock": 1, "age_restricted": 0})])   # writable copy
        assert a.count() == 2001 and b.count() == 2000
    finally:
        a.close()
        b.close()


def test_origin_opens_the_edge_bundles_shipped_item_index_like_a_built_one(registry_dir: Path, tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    import json
    import shutil

    from strata.origin.bundle import load_origin_bundle
    from strata.origin.retrieval import build_index, open_item_index

    bundle = load_origin_bundle(registry_dir, "edge-scorer")
    bdir = registry_dir / "edge-scorer" / bundle.version
    meta = json.loads((bdir / B.ITEM_INDEX_META_FILE).read_text())
    cat = bundle.catalog
    with_vec = int(np.any(cat.vectors != 0, axis=1).sum())
    assert meta["points"] == with_vec < len(cat)            # the graph holds the items with a vector
    assert meta["unindexed"] == len(cat) - with_vec          # the others were placed at export
    with caplog.at_level("INFO", logger="strata.origin.retrieval"):
        shipped = open_item_index(bdir, cat, tmp_path / "shipped")
    opened = next(r for r in caplog.records if r.getMessage() == "shipped item index opened")
    assert opened.placed_at_centroid == 0                   # nothing left to place at start
    cold = [cat.item_ids[r] for r in np.flatnonzero(~np.any(cat.vectors != 0, axis=1))[:20].tolist()]
    for key, v in shipped.vectors(cold).items():              # where the origin itself would place them
        assert np.allclose(v, cat.category_centroids([cat.categories[cat.row[key]]])[cat.categories[cat.row[key]]], atol=1e-6)
    built = build_index(cat, "edge", str(tmp_path / "built"))
    try:
        built.optimize()
        assert shipped.count() == built.count() == len(cat)
        flt = PayloadFilter(equals={"in_stock": 1, "age_restricted": 0})
        rng = np.random.default_rng(5)
        for q in cat.vectors[rng.choice(np.flatnonzero(np.any(cat.vectors != 0, axis=1)), 10, replace=False)]:
            a, b = _ranked(shipped.search(q, 50, flt, ef=500)), _ranked(built.search(q, 50, flt, ef=500))
            assert [s for s, _ in a] == [s for s, _ in b]
            last = a[-1][0]
            assert [x for x in a if x[0] < last] == [x for x in b if x[0] < last]
    finally:
        shipped.close()
        built.close()
    # a bundle whose vectors changed after the shard was built: not used
    copy = tmp_path / "copy"
    shutil.copytree(bdir, copy)
    np.save(copy / B.ITEM_VECTORS_FILE, np.roll(np.load(copy / B.ITEM_VECTORS_FILE), 1, axis=0))
    assert open_item_index(copy, cat, tmp_path / "other") is None


def test_a_shipped_point_can_be_updated_and_deleted_in_the_opened_copy(tmp_path: Path) -> None:
    """The opened copy starts a new log; its updates must still win over the points' build-time versions
    (without moving the counter past the build's, Qdrant ignored both the upsert and the delete)."""
    from strata.shared.models.item_shard import build_shipped_shard

    rng = np.random.default_rng(11)
    vecs = rng.normal(size=(5000, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(5000)]
    stats = build_shipped_shard(tmp_path / "s.tar", keys, vecs, [{"category": "a", "in_stock": 1,
                                                                  "age_restricted": 0}] * 5000)
    assert stats["last_op"] >= 3                   # the field indexes and the upsert batches
    index = open_shipped_shard(tmp_path / "s.tar", tmp_path / "open")
    try:
        in_stock = PayloadFilter(equals={"in_stock": 1})
        last = keys[-1]                             # written by the build's last batch: the highest version
        index.upsert([IndexPoint(last, vecs[-1], {"category": "a", "in_stock": 0, "age_restricted": 0})])
        assert last not in {h.key for h in index.search(vecs[-1], 10, in_stock)}
        assert index.count(in_stock) == 4999
        index.delete(["k0"])
        assert index.count() == 4999 and index.search(vecs[0], 1)[0].key != "k0"
    finally:
        index.close()


def test_the_shard_ships_as_a_plain_tar_with_lean_indexes_and_an_older_gzip_tar_still_opens(tmp_path: Path) -> None:
    """What makes a shipped shard open fast: no gzip to undo, no index on the key, flags lookup-only."""
    import json
    import shutil

    from strata.shared.models.item_shard import build_shipped_shard

    vecs = np.random.default_rng(2).normal(size=(400, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(400)]
    build_shipped_shard(tmp_path / "s.tar", keys, vecs, [{"category": "a", "in_stock": 1, "age_restricted": 0}] * 400)
    with tarfile.open(tmp_path / "s.tar", "r:") as tar:         # "r:" refuses a compressed tar
        assert any(n.endswith("/segments") for n in tar.getnames())
        packed = {m.name: m.size for m in tar.getmembers() if m.isfile()}
        tails = json.loads(tar.extractfile("index/shipped.json").read())["zero_tails"]
    # files go in without their zero tails (the engine preallocates pages): the open gives them back
    assert tails and all(packed[f"index/{rel}"] < size for rel, size in tails.items())
    index = open_shipped_shard(tmp_path / "s.tar", tmp_path / "open")
    kept = [(tmp_path / "open" / "index" / rel, size) for rel, size in tails.items()]
    kept = [(p, size) for p, size in kept if p.is_file()]          # the engine may fold a journal away at load
    assert kept and all(p.stat().st_size >= size for p, size in kept)
    try:
        schema = index.shard.info().payload_schema
        assert set(schema) == set(ITEM_FIELDS)
        assert all(schema[f].params.lookup and not schema[f].params.range for f in ("in_stock", "age_restricted"))
        assert index.search(vecs[5], 1, PayloadFilter(equals={"in_stock": 1}))[0].key == "k5"
    finally:
        index.close()
    # a bundle exported before (gzip-1 tar): the same shard still opens
    with tarfile.open(tmp_path / "s.tar") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    with tarfile.open(tmp_path / "old.tar", "w:gz", compresslevel=1) as tar:
        tar.add(tmp_path / "x" / "index", arcname="index")
    shutil.rmtree(tmp_path / "x")
    old = open_shipped_shard(tmp_path / "old.tar", tmp_path / "old")
    try:
        assert old.count() == 400 and old.search(vecs[9], 1)[0].key == "k9"
    finally:
        old.close()
