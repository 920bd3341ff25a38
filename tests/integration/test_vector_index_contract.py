"""ONE contract suite for every ``VectorIndex`` backend: Qdrant Edge in-process and qdrant-client (local mode,
the same client code a Qdrant server is driven with). Expectations are exact and come from NumPy."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from strata.shared.errors import ConfigError, InvalidField
from strata.shared.models.vector_index import (
    EdgeVectorIndex,
    IndexPoint,
    IndexUnavailable,
    PayloadFilter,
    QdrantServerIndex,
    VectorIndex,
    open_vector_index,
)

DIM = 8
N = 300
FIELDS = {"category": "keyword", "in_stock": "integer", "age_restricted": "integer"}
CATS = ("wine", "dairy", "toys")
# qdrant-client's local mode says (once) that it ignores payload indexes and search params: it brute-forces.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning",
                                        "ignore:Local mode performs exact:UserWarning")


def _catalog(seed: int = 3) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    payloads = [{"category": CATS[i % 3], "in_stock": int(i % 4 != 0), "age_restricted": int(i % 3 == 0)}
                for i in range(N)]
    return vecs, payloads


@pytest.fixture(params=["edge", "qdrant"])
def index(request, tmp_path) -> Iterator[VectorIndex]:
    if request.param == "edge":
        idx: VectorIndex = EdgeVectorIndex.create(tmp_path / "idx", DIM, FIELDS)
    else:
        idx = QdrantServerIndex.connect(":memory:", "items", DIM, FIELDS)
    vecs, payloads = _catalog()
    idx.upsert([IndexPoint(f"SKU-{i}", vecs[i], payloads[i]) for i in range(N)])
    try:
        yield idx
    finally:
        idx.close()


def _exact(q: np.ndarray, mask: np.ndarray | None = None, k: int = 10) -> list[str]:
    vecs, _ = _catalog()
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = unit @ (q / np.linalg.norm(q))
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
    order = np.argsort(-sims, kind="stable")[:k]
    return [f"SKU-{i}" for i in order if np.isfinite(sims[i])]


def test_search_returns_the_exact_nearest_by_cosine(index: VectorIndex) -> None:
    q = np.random.default_rng(9).normal(size=DIM).astype(np.float32)
    hits = index.search(q, 10, exact=True)
    assert [h.key for h in hits] == _exact(q)
    vecs, _ = _catalog()
    v = vecs[int(hits[0].key.split("-")[1])]
    assert hits[0].score == pytest.approx(float(v @ q / np.linalg.norm(v) / np.linalg.norm(q)), abs=1e-5)


def test_filters_on_integer_flags_and_keywords_match_numpy(index: VectorIndex) -> None:
    _, payloads = _catalog()
    q = np.random.default_rng(11).normal(size=DIM).astype(np.float32)
    flt = PayloadFilter(equals={"in_stock": 1, "age_restricted": 0}, none_of={"category": ["toys"]})
    mask = np.array([p["in_stock"] == 1 and p["age_restricted"] == 0 and p["category"] != "toys" for p in payloads])
    assert index.count(flt) == int(mask.sum())
    hits = index.search(q, 20, flt, with_fields=("category", "in_stock"), exact=True)
    assert [h.key for h in hits] == _exact(q, mask, 20)
    assert all(h.payload["in_stock"] == 1 and h.payload["category"] != "toys" for h in hits)
    assert set(hits[0].payload) == {"category", "in_stock"}


def test_any_of_and_excluded_keys(index: VectorIndex) -> None:
    _, payloads = _catalog()
    q = np.ones(DIM, dtype=np.float32)
    flt = PayloadFilter(any_of={"category": ["wine", "dairy"]}, exclude_keys=["SKU-0", "SKU-1"])
    mask = np.array([p["category"] in ("wine", "dairy") for p in payloads])
    mask[[0, 1]] = False
    assert index.count(flt) == int(mask.sum())
    assert [h.key for h in index.search(q, 15, flt, exact=True)] == _exact(q, mask, 15)


def test_upsert_replaces_and_delete_removes(index: VectorIndex) -> None:
    q = np.arange(1, DIM + 1, dtype=np.float32)
    index.upsert([IndexPoint("SKU-5", q, {"category": "toys", "in_stock": 0, "age_restricted": 0})])
    assert index.count() == N
    top = index.search(q, 1, with_fields=("in_stock",), exact=True)[0]
    assert (top.key, top.payload["in_stock"]) == ("SKU-5", 0)
    assert top.score == pytest.approx(1.0, abs=1e-5)
    index.delete(["SKU-5", "never-there"])
    assert index.count() == N - 1
    assert "SKU-5" not in [h.key for h in index.search(q, 5, exact=True)]


def test_new_point_is_searchable_at_once_and_vectors_come_back_unit_length(index: VectorIndex) -> None:
    v = np.full(DIM, 2.0, dtype=np.float32)
    index.upsert([IndexPoint("NEW-1", v, {"category": "dairy", "in_stock": 1, "age_restricted": 0})])
    assert index.search(v, 1, PayloadFilter(equals={"category": "dairy"}))[0].key == "NEW-1"
    got = index.vectors(["NEW-1", "missing"])
    assert list(got) == ["NEW-1"]
    np.testing.assert_allclose(got["NEW-1"], v / np.linalg.norm(v), atol=1e-6)


@pytest.mark.parametrize(("point", "field", "reason"), [
    (IndexPoint("x", np.ones(DIM + 1)), "points[0].vector", f"must have {DIM} dimensions, got {DIM + 1}"),
    (IndexPoint("x", np.zeros(DIM)), "points[0].vector", "must be finite and not all zero"),
    (IndexPoint("x", np.full(DIM, np.nan)), "points[0].vector", "must be finite"),
    (IndexPoint("x", np.ones(DIM), {"in_stock": True}), "points[0].payload.in_stock", "0/1 integers"),
    (IndexPoint("x", np.ones(DIM), {"price": 1.5}), "points[0].payload.price", "integers or strings"),
    (IndexPoint("", np.ones(DIM)), "points[0].key", "non-empty string"),
    (IndexPoint("x", np.ones(DIM), {"key": "y"}), "points[0].payload", "reserved"),
])
def test_bad_points_are_refused_naming_the_field(index: VectorIndex, point, field, reason) -> None:
    with pytest.raises(InvalidField) as err:
        index.upsert([point])
    assert err.value.field == field
    assert reason in err.value.reason
    assert index.count() == N


def test_bool_filters_are_refused_not_silently_empty() -> None:
    with pytest.raises(InvalidField) as err:
        PayloadFilter(equals={"in_stock": True})
    assert err.value.field == "filter.equals.in_stock"
    assert "0/1 integers" in err.value.reason


def test_edge_shard_reopens_with_points_and_builds_hnsw(tmp_path) -> None:
    vecs, payloads = _catalog()
    idx = EdgeVectorIndex.create(tmp_path / "s", DIM, FIELDS)
    idx.upsert([IndexPoint(f"SKU-{i}", vecs[i], payloads[i]) for i in range(N)])
    idx.optimize()
    idx.close()
    again = open_vector_index("edge", tmp_path / "s", dim=DIM)
    try:
        assert again.count(PayloadFilter(equals={"in_stock": 1})) == sum(p["in_stock"] for p in payloads)
        q = vecs[7]
        assert again.search(q, 1, ef=64)[0].key == "SKU-7"
        assert again.fields == FIELDS
    finally:
        again.close()


def test_unknown_backend_names_the_valid_ones(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        open_vector_index("faiss", tmp_path, dim=DIM)
    assert err.value.field == "vector_index.backend"
    assert "edge, qdrant" in err.value.reason


def test_a_closed_edge_shard_raises_index_unavailable(tmp_path) -> None:
    idx = EdgeVectorIndex.create(tmp_path / "c", DIM, FIELDS)
    idx.close()
    with pytest.raises(IndexUnavailable) as err:
        idx.search(np.ones(DIM), 3)
    assert err.value.status == 503 and "closed" in err.value.reason
    idx.close()                       # closing twice is harmless
