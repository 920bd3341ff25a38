"""The origin serving with the two-tower and the deep ranker: a registry written by the real exporters
(edge scorer + retrieval + ranker of one small synthetic world, the functions ``strata export`` runs, at
test size), purchases in a real Valkey written with the stream processor's own plan ops, and the recovery
rule: ranker fails -> the registry's previous ranker version -> two-tower (retrieval) order, degraded."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from strata.shared.models import bundle as B
from strata.shared.models import ranker_bundle as RB
from strata.shared.models.ranker_features import Histories, ranker_rows, summarize, tower_input
from tests.integration.streaming_kit import apply_purchases

USER = "u-models"
BOUGHT = ["SKU-000003", "SKU-000004", "SKU-000010"]
T0 = int(time.time() * 1000) - 86_400_000    # a day ago: the ranker's recency features see real ages


@pytest.fixture(scope="module")
def models_registry(models_registry_dir) -> Path:
    return models_registry_dir


def _buy(store, items: list[str]) -> None:
    apply_purchases(store, USER, "s-models", items, T0, 60_000, "m")


def _serve(registry: Path, store) -> Iterator[tuple[TestClient, OriginNode]]:
    node = OriginNode(load_settings(origin={"registry": str(registry), "mmr_lambda": 1.0, "explore_slots": 0,
                                            "store": {"url": store.url, "timeout_ms": 500.0}}))
    with TestClient(build_app(node)) as client:
        yield client, node


def _ask(client: TestClient, consent: bool = True) -> dict:
    r = client.post("/v1/recommend", json={"user_id": USER, "session_id": "s-models", "k": 10,
                                           "context": {"consent": consent}})
    assert r.status_code == 200, r.text
    return r.json()


def _broken_ranker_version(registry: Path, version: str, base: str = "1.0.0") -> None:
    """A ranker version (a copy of ``base``, or ``version`` itself when it exists) whose ONNX graph loads
    (right input and output) but scores every row +inf: a real onnxruntime failure at run time, not a
    stand-in object. CURRENT points at it."""
    import onnx
    from onnx import TensorProto, helper

    from strata.shared.models.ranker_features import N_FEATURES

    src, dst = registry / RB.RANKER_MODEL / base, registry / RB.RANKER_MODEL / version
    if not dst.exists():
        shutil.copytree(src, dst)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["features", "axes"], ["total"], keepdims=0),
         helper.make_node("Div", ["total", "zero"], ["score"])],
        "broken", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1]), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, dst / RB.RANKER_FILE)
    manifest = json.loads((dst / B.MANIFEST_FILE).read_text())
    manifest["version"] = version
    manifest["files"][RB.RANKER_FILE] = B.sha256_file(dst / RB.RANKER_FILE)
    (dst / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    (registry / RB.RANKER_MODEL / B.CURRENT_FILE).write_text(f"{version}\n")


@pytest.fixture(scope="module")
def healthy(models_registry, session_store) -> Iterator[tuple[TestClient, OriginNode]]:
    session_store.start()
    yield from _serve(models_registry, session_store)


def _expected_scores(registry: Path, items: list[str]) -> dict[str, float]:
    """What the served path (``shared.models.retrieval_ranker``) scores the items, squashed like the rank stage."""
    pipeline, ids, _ = RB.load_retrieval_ranker(registry)
    index = {str(i): k for k, i in enumerate(ids.tolist())}
    bought = [index[i] for i in BOUGHT]
    ts = np.array([T0 + i * 60_000 for i in range(len(BOUGHT))])
    h = Histories.single(np.array(bought), ts, ts, int(time.time() * 1000))
    user = pipeline.tower.vectors(tower_input(h, pipeline.tower.history_len, pipeline.stats.n_items))
    cand = np.array([index[i] for i in items], dtype=np.int64)
    tower = (pipeline.item_vectors[cand] @ user[0]).astype(np.float32)
    x = ranker_rows(h, summarize(h, pipeline.stats), pipeline.stats, np.array([0, cand.size]), cand, tower)
    score, by = pipeline.score_rows(x, tower)
    assert by == "ranker"
    return dict(zip(items, (1.0 / (1.0 + np.exp(-score.astype(np.float64)))).tolist(), strict=True))


def test_origin_retrieves_with_the_two_tower_and_ranks_with_the_deep_ranker(healthy, models_registry, fresh_valkey) -> None:
    client, node = healthy
    ready = client.get("/readyz").json()
    assert ready["models"] == {"retrieval": "1.0.0", "ranker": "1.0.0"}
    cold = _ask(client)                      # no purchases yet: the edge scorer ranks, no two-tower source
    assert not any("two_tower_source" in it["sources"] for it in cold["items"]) and not cold["degraded"]
    _buy(fresh_valkey, BOUGHT)
    before = dict(node.rank.scored_by)
    d = _ask(client)
    assert not d["degraded"] and d["route_reasons"] == []
    items = d["items"]
    assert len(items) == 10 and any("two_tower_source" in it["sources"] for it in items)
    assert node.rank.scored_by["ranker"] == before.get("ranker", 0) + 1
    # the answer's scores are the deep ranker's (feature ages move by the test's seconds: tolerance)
    expected = _expected_scores(models_registry, [it["item_id"] for it in items])
    for it in items:
        assert it["score"] == pytest.approx(expected[it["item_id"]], abs=2e-3)
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)


def test_without_consent_the_models_are_not_used(healthy, fresh_valkey) -> None:
    client, node = healthy
    _buy(fresh_valkey, BOUGHT)
    ranker_before = node.rank.scored_by.get("ranker", 0)
    d = _ask(client, consent=False)
    assert len(d["items"]) == 10 and not any("two_tower_source" in it["sources"] for it in d["items"])
    assert node.rank.scored_by.get("ranker", 0) == ranker_before and node.rank.scored_by["edge_scorer"] >= 1


def test_ranker_failure_falls_back_to_the_previous_version_then_retrieval_order(models_registry, fresh_valkey, tmp_path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(models_registry, registry)
    _broken_ranker_version(registry, "1.0.1")           # CURRENT: loads, fails at run time
    _buy(fresh_valkey, BOUGHT)
    for client, node in _serve(registry, fresh_valkey):
        assert client.get("/readyz").json()["models"]["ranker"] == "1.0.1"
        d = _ask(client)
        assert d["degraded"] and d["route_reasons"] == ["ranker_failed", "ranker_previous_version"]
        assert node.rank.scored_by == {"previous_ranker": 1}
        assert 'strata_origin_scored_total{by="previous_ranker"} 1' in client.get("/metrics").text
        expected = _expected_scores(models_registry, [it["item_id"] for it in d["items"]])
        for it in d["items"]:                           # version 1.0.0 scored them
            assert it["score"] == pytest.approx(expected[it["item_id"]], abs=2e-3)
    _broken_ranker_version(registry, "1.0.0")            # the previous version fails too
    (registry / RB.RANKER_MODEL / B.CURRENT_FILE).write_text("1.0.1\n")
    for client, node in _serve(registry, fresh_valkey):
        d = _ask(client)
        assert d["degraded"] and d["route_reasons"] == ["ranker_failed", "retrieval_order"]
        assert node.rank.scored_by == {"retrieval_order": 1} and len(d["items"]) == 10
        scores = [it["score"] for it in d["items"]]
        assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)


def test_an_unloadable_current_ranker_is_served_by_the_previous_version(models_registry, fresh_valkey,
                                                                       tmp_path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(models_registry, registry)
    shutil.copytree(registry / RB.RANKER_MODEL / "1.0.0", registry / RB.RANKER_MODEL / "1.0.1")
    (registry / RB.RANKER_MODEL / "1.0.1" / RB.RANKER_FILE).write_bytes(b"not onnx")
    (registry / RB.RANKER_MODEL / B.CURRENT_FILE).write_text("1.0.1\n")
    _buy(fresh_valkey, BOUGHT)
    for client, node in _serve(registry, fresh_valkey):
        assert client.get("/readyz").json()["models"]["ranker"] == "1.0.0"
        d = _ask(client)
        assert d["degraded"] and d["route_reasons"] == ["ranker_previous_version"]
        assert node.rank.scored_by == {"ranker": 1}


def test_an_item_the_models_do_not_know_keeps_a_score_after_the_known_ones(healthy, fresh_valkey) -> None:
    client, node = healthy
    _buy(fresh_valkey, BOUGHT)
    category = node.state.catalog.categories[0]
    item = {"item_id": "NEW-ZYZ-9", "title": "Zyzzyva gadget", "category": category, "price": 3.2, "stock": 1,
            "age_restricted": False}
    assert client.post("/v1/items", json={"items": [item]}).status_code == 200
    ranked = node.rank.scored_by.get("ranker", 0)
    r = client.post("/v1/recommend", json={"user_id": USER, "session_id": "s-models", "k": 10, "query": "zyzzyva"})
    d = r.json()
    assert r.status_code == 200 and not d["degraded"] and node.rank.scored_by["ranker"] == ranked + 1
    new = next(it for it in d["items"] if it["item_id"] == "NEW-ZYZ-9")
    assert new["sources"] == ["content_source"]
    # unknown to the ranker: lowest known score x retrieval score (<= 1 here), plus the full query match (1)
    known = [it["score"] for it in d["items"] if it["item_id"] != "NEW-ZYZ-9"]
    assert 1.0 < new["score"] <= 1.0 + min(known) + 1e-6
