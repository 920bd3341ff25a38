"""The session's recent items feed the user tower (real Valkey, real exported bundles, real Qdrant Edge):
a consenting user with no purchases but items in the session gets two-tower candidates ranked by the deep
ranker; without consent nothing personal is used. The session hash field ``recent`` is written by the stream
processor's own function (``shared.ranking.session_update.push_recent``: ids joined by \x1f, newest first)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from strata.shared.keys import session_key
from strata.shared.models import ranker_bundle as RB
from strata.shared.models.ranker_features import Histories, ranker_rows, summarize
from strata.shared.ranking.session_update import push_recent

USER, SESSION = "u-session-only", "s-session-only"
SEEN = ["SKU-000021", "SKU-000007", "SKU-000042"]        # most recent first


def _serve(registry: Path, store) -> Iterator[tuple[TestClient, OriginNode]]:
    node = OriginNode(load_settings(origin={"registry": str(registry), "mmr_lambda": 1.0, "explore_slots": 0,
                                            "store": {"url": store.url, "timeout_ms": 500.0}}))
    with TestClient(build_app(node)) as client:
        yield client, node


@pytest.fixture(scope="module")
def served(models_registry_dir, session_store) -> Iterator[tuple[TestClient, OriginNode]]:
    session_store.start()
    yield from _serve(models_registry_dir, session_store)


def _write_session(store, items: list[str] | bytes) -> None:
    """``items`` most recent first (stored as the processor stores views in log order), or raw bytes."""
    c = store.client()
    try:
        raw = items if isinstance(items, bytes) else push_recent(b"", items[::-1])
        c.hset(session_key("default", SESSION), mapping={"recent": raw})
    finally:
        c.close()


def _ask(client: TestClient, consent: bool = True, **context) -> dict:
    r = client.post("/v1/recommend", json={"user_id": USER, "session_id": SESSION, "k": 10,
                                           "context": {"consent": consent, **context}})
    assert r.status_code == 200, r.text
    return r.json()


def _expected(registry: Path, seen: list[str], items: list[str]) -> dict[str, float]:
    """The deep ranker's scores for ``items`` of a user whose tower input is ``seen`` and who bought nothing."""
    pipeline, ids, _ = RB.load_retrieval_ranker(registry)
    index = {str(i): k for k, i in enumerate(ids.tolist())}
    tower_in = np.full((1, pipeline.tower.history_len), pipeline.stats.n_items, dtype=np.int64)
    tower_in[0, :len(seen)] = [index[i] for i in seen]
    user = pipeline.tower.vectors(tower_in)[0]
    empty = np.zeros(0, dtype=np.int64)
    h = Histories.single(empty, empty, empty, int(time.time() * 1000))
    cand = np.array([index[i] for i in items], dtype=np.int64)
    tower = (pipeline.item_vectors[cand] @ user).astype(np.float32)
    x = ranker_rows(h, summarize(h, pipeline.stats), pipeline.stats, np.array([0, cand.size]), cand, tower)
    score, by = pipeline.score_rows(x, tower)
    assert by == "ranker"
    return dict(zip(items, (1.0 / (1.0 + np.exp(-score.astype(np.float64)))).tolist(), strict=True))


def test_a_session_without_purchases_gets_two_tower_candidates_ranked_by_the_deep_ranker(
        served, models_registry_dir, fresh_valkey) -> None:
    client, node = served
    cold = _ask(client)                      # nothing in the session, no purchases: no two-tower
    assert not any("two_tower_source" in it["sources"] for it in cold["items"])
    assert node.state.models.index is not None          # the retrieval bundle's shipped shard was opened
    _write_session(fresh_valkey, SEEN)
    before = node.rank.scored_by.get("ranker", 0)
    d = _ask(client)
    assert not d["degraded"] and d["route_reasons"] == []
    items = d["items"]
    assert len(items) == 10 and sum("two_tower_source" in it["sources"] for it in items) >= 5
    assert node.rank.scored_by["ranker"] == before + 1
    expected = _expected(models_registry_dir, SEEN, [it["item_id"] for it in items])
    for it in items:
        assert it["score"] == pytest.approx(expected[it["item_id"]], abs=1e-4)
    # the session order matters: the tower reads the most recent item first
    _write_session(fresh_valkey, SEEN[::-1])
    again = _ask(client)
    moved = _expected(models_registry_dir, SEEN[::-1], [it["item_id"] for it in again["items"]])
    for it in again["items"]:
        assert it["score"] == pytest.approx(moved[it["item_id"]], abs=1e-4)


def test_without_consent_the_session_items_are_not_used(served, fresh_valkey) -> None:
    client, node = served
    _write_session(fresh_valkey, SEEN)
    ranked = node.rank.scored_by.get("ranker", 0)
    edge = node.rank.scored_by.get("edge_scorer", 0)
    d = _ask(client, consent=False)
    assert len(d["items"]) == 10 and not any("two_tower_source" in it["sources"] for it in d["items"])
    assert d["route_reasons"] == ["no_consent_context_only"]
    assert node.rank.scored_by.get("ranker", 0) == ranked and node.rank.scored_by["edge_scorer"] == edge + 1


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"NOT-A-KNOWN-ITEM", b"\x1f\x1f", b""])
def test_unreadable_or_unknown_session_items_leave_the_answer_unpersonalised(served, fresh_valkey,
                                                                            raw: bytes) -> None:
    client, _ = served
    _write_session(fresh_valkey, raw)
    d = _ask(client)
    assert len(d["items"]) == 10 and not d["degraded"]
    assert not any("two_tower_source" in it["sources"] for it in d["items"])


def test_repeats_in_the_session_count_once_newest_first(served, models_registry_dir, fresh_valkey) -> None:
    """The processor keeps repeats; the tower reads each item once at its newest position."""
    client, _ = served
    _write_session(fresh_valkey, [SEEN[0], SEEN[1], SEEN[0], SEEN[2], SEEN[1]])
    d = _ask(client)
    expected = _expected(models_registry_dir, SEEN, [it["item_id"] for it in d["items"]])
    for it in d["items"]:
        assert it["score"] == pytest.approx(expected[it["item_id"]], abs=1e-4)


def test_the_index_filters_and_answers_like_exact_search(served, fresh_valkey) -> None:
    """Two-tower candidates pass the age gate and stock inside the ANN; the ANN's top equals exact search
    over the same vectors (500 items, ef above the catalog size: HNSW finds them all)."""
    from strata.origin.stages.ctx import OriginCtx
    from strata.origin.tower_search import exact_nearest
    from strata.shared.serving.codecs import JSON

    client, node = served
    _write_session(fresh_valkey, SEEN)
    state = node.state
    models = state.models
    for age_verified in (False, True):
        d = _ask(client, age_verified=age_verified)
        cat = state.catalog
        for it in d["items"]:
            assert age_verified or not cat.age_restricted[cat.row[it["item_id"]]]
        body = (b'{"user_id": "u", "session_id": "s", "k": 10, "context": {"age_verified": %s}}'
                % (b"true" if age_verified else b"false"))
        ctx = OriginCtx(0, body, None, None, JSON, state)
        for stage in node.recommend.pipeline.stages[:2]:
            stage.run(ctx)
        user = models.pipeline.item_vectors[models.model_of(SEEN[:1])[0]]
        from strata.origin.retrieval import source_filter

        hits = models.index.search(user, 100, source_filter(state, age_verified), ef=600)
        exact = exact_nearest(ctx, models, user, 100).items
        assert models.model_of([h.key for h in hits]).tolist() == exact.tolist()
        if not age_verified:
            assert not any(cat.age_restricted[models.row_of_model[i]] for i in exact.tolist())


def test_index_failure_falls_back_to_exact_search_marked_degraded(models_registry_dir, fresh_valkey) -> None:
    _write_session(fresh_valkey, SEEN)
    for client, node in _serve(models_registry_dir, fresh_valkey):
        healthy = _ask(client)
        node.state.models.index.close()         # a closed shard: every search raises IndexUnavailable
        d = _ask(client)
        assert d["degraded"] and d["route_reasons"] == ["two_tower_index_failed"]
        assert [it["item_id"] for it in d["items"]] == [it["item_id"] for it in healthy["items"]]
        assert node.two_tower.index_failures == 1


def test_an_item_put_out_of_stock_leaves_the_two_tower_index(models_registry_dir, fresh_valkey) -> None:
    _write_session(fresh_valkey, SEEN)
    for client, node in _serve(models_registry_dir, fresh_valkey):
        top = next(it for it in _ask(client)["items"] if "two_tower_source" in it["sources"])
        cat = node.state.catalog
        r = cat.row[top["item_id"]]
        item = {"item_id": top["item_id"], "title": cat.titles[r], "category": cat.categories[r],
                "price": float(cat.prices[r]), "stock": 0, "age_restricted": bool(cat.age_restricted[r])}
        assert client.post("/v1/items", json={"items": [item]}).status_code == 200
        models = node.state.models
        user = models.pipeline.item_vectors[models.model_of([top["item_id"]])[0]]
        keys = {h.key for h in models.index.search(user, 50)}
        from strata.origin.retrieval import source_filter

        kept = {h.key for h in models.index.search(user, 50, source_filter(node.state, True))}
        assert top["item_id"] in keys and top["item_id"] not in kept
        assert top["item_id"] not in [it["item_id"] for it in _ask(client)["items"]]


def test_a_retrieval_bundle_whose_vectors_changed_is_indexed_at_start(models_registry_dir, fresh_valkey, tmp_path) -> None:
    """The shipped shard was built from other vectors than the bundle now has: it is not used; the vectors
    are indexed at start and the two-tower search answers like exact search over the new vectors."""
    import json
    import shutil

    from strata.shared.models import bundle as B
    from strata.shared.models.vector_index import PayloadFilter

    registry = tmp_path / "registry"
    shutil.copytree(models_registry_dir, registry)
    bdir = registry / RB.RETRIEVAL_MODEL / "1.0.0"
    vecs = np.load(bdir / B.ITEM_VECTORS_FILE)
    np.save(bdir / B.ITEM_VECTORS_FILE, np.roll(vecs, 1, axis=0))
    manifest = json.loads((bdir / B.MANIFEST_FILE).read_text())
    manifest["files"][B.ITEM_VECTORS_FILE] = B.sha256_file(bdir / B.ITEM_VECTORS_FILE)
    (bdir / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    _write_session(fresh_valkey, SEEN)
    for client, node in _serve(registry, fresh_valkey):
        models = node.state.models
        assert models.index is not None and models.index.count() == 500
        user = models.pipeline.item_vectors[7]                   # the new vectors
        flt = PayloadFilter(equals={"in_stock": 1})
        hnsw = [h.key for h in models.index.search(user, 20, flt, ef=600)]
        exact = [h.key for h in models.index.search(user, 20, flt, exact=True)]
        assert hnsw == exact and hnsw[0] == str(models.model_ids[7])
        d = _ask(client)
        assert not d["degraded"] and any("two_tower_source" in it["sources"] for it in d["items"])


def test_an_ann_answer_that_missed_the_neighbourhood_is_replaced_by_exact_search(served, tmp_path) -> None:
    """The sample check (``origin.tower_search``): a real shard whose points sit at other items' vectors
    answers from the wrong region, like a beam stuck in another cluster; the exactly scored sample items
    show it and the source answers with exact search instead. A correct shard passes the check."""
    from strata.origin.stages.ctx import OriginCtx
    from strata.origin.tower_index import build_tower_index
    from strata.origin.tower_search import TowerSearch, exact_nearest
    from strata.shared.serving.codecs import JSON

    client, node = served
    state, models = node.state, node.state.models
    search = TowerSearch(20, ef=600)
    ctx = OriginCtx(0, b'{"user_id": "u", "session_id": "s", "k": 10}', None, None, JSON, state)
    for stage in node.recommend.pipeline.stages[:2]:
        stage.run(ctx)
    user = models.pipeline.tower.vectors(models.tower_input(None, tuple(SEEN)))[0]
    exact = exact_nearest(ctx, models, user, search.limit).items
    assert search.nearest(ctx, models, user).items.tolist() == exact.tolist()    # ef above the catalog size
    assert search.checked_exact == 0
    good, vecs = models.index, models.pipeline.item_vectors
    models.pipeline.item_vectors = np.roll(vecs, 17, axis=0)
    try:
        wrong = build_tower_index(models, state.catalog, "edge", str(tmp_path / "wrong"))
    finally:
        models.pipeline.item_vectors = vecs
    models.index = wrong
    try:
        keys = {h.key for h in wrong.search(user, search.limit, ef=search.ef)}
        assert len(keys & set(models.model_ids[exact].tolist())) < 0.5 * exact.size     # the ANN alone misses
        assert search.nearest(ctx, models, user).items.tolist() == exact.tolist()
        assert search.checked_exact == 1
    finally:
        models.index = good
        wrong.close()
