"""Strata's two-tower + deep ranker on a small synthetic world: ONNX parity, the evaluated recommender,
the retrieval and ranker bundles, and the dataset interface both data sources implement."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from strata.model_export.datasets.interface import OnlineRetail, PurchaseDataset, SyntheticPurchases
from strata.model_export.evaluation.metrics import ndcg_at
from strata.model_export.evaluation.popularity import Popularity
from strata.model_export.evaluation.split import temporal_split
from strata.model_export.evaluation.strata import StrataRecommender
from strata.model_export.parity import TOLERANCE, check_parity
from strata.model_export.ranker import RankerParams, export_ranker
from strata.model_export.retail_bundles import TRAIN_THREADS, export_retail_bundles, train_threads
from strata.model_export.retail_models import StrataParams, parity_inputs, train_models, write_onnx
from strata.model_export.two_tower import TowerParams
from strata.model_export.world import WorldConfig
from strata.shared.errors import ParityError
from strata.shared.models import bundle as B
from strata.shared.models import ranker_bundle as RB
from strata.shared.models.ranker_features import FEATURE_NAMES, Histories

SMALL_WORLD = WorldConfig(n_items=500, n_users=200, n_sessions=3000)
SMALL = StrataParams(tower=TowerParams(dim=16, history_len=10, epochs=2, batch=256),
                     ranker=RankerParams(hidden=(16,), epochs=3), parity_min_rows=200)


@pytest.fixture(scope="module")
def dataset() -> SyntheticPurchases:
    return SyntheticPurchases(SMALL_WORLD)


@pytest.fixture(scope="module")
def baskets(dataset):
    return dataset.baskets()


@pytest.fixture(scope="module")
def trained(baskets):
    return train_models(baskets, SMALL)


def test_both_data_sources_implement_the_dataset_interface(dataset, baskets) -> None:
    assert isinstance(dataset, PurchaseDataset) and isinstance(OnlineRetail(Path("x.parquet")), PurchaseDataset)
    assert baskets.catalog.n_items == SMALL_WORLD.n_items and len(baskets) > 1000
    # sorted by (customer, time): what makes a history a contiguous slice
    key = baskets.customer.astype(np.float64) * 1e13 + baskets.ts_ms
    assert np.all(np.diff(key) >= 0)
    assert dataset.describe()["fingerprint"] == dataset.world.fingerprint()


def test_user_tower_and_ranker_onnx_match_torch(trained, baskets, tmp_path) -> None:
    hist, rows = parity_inputs(baskets, trained, SMALL.sizes, SMALL.parity_min_rows)
    assert hist.shape == (SMALL.parity_min_rows, SMALL.tower.history_len) and rows.shape[1] == len(FEATURE_NAMES)
    parity = write_onnx(trained, tmp_path, rows, SMALL.parity_min_rows, hist)
    assert parity["user_tower"]["max_abs_diff"] <= TOLERANCE and parity["ranker"]["max_abs_diff"] <= TOLERANCE
    assert parity["ranker"]["rows"] == rows.shape[0] >= SMALL.parity_min_rows
    # the towers' vectors are unit length, so the two-tower score is a cosine
    assert np.allclose(np.linalg.norm(trained.towers.item_vectors, axis=1), 1.0, atol=1e-5)


def test_parity_gate_refuses_a_ranker_that_drifted_from_its_onnx(trained, baskets, tmp_path) -> None:
    _, rows = parity_inputs(baskets, trained, SMALL.sizes, SMALL.parity_min_rows)
    path = export_ranker(trained.ranker, tmp_path / "ranker.onnx")
    with pytest.raises(ParityError, match="max \\|ORT - source\\|"):
        check_parity(path, lambda x: trained.ranker.predict(x) + 1e-3, rows, min_rows=SMALL.parity_min_rows,
                     input_name="features", output_name="score")


def test_strata_recommender_gives_valid_distinct_personal_top_k(baskets) -> None:
    cut = int(np.quantile(baskets.ts_ms, 0.8))
    split = temporal_split(baskets, cut)
    model = StrataRecommender(SMALL, num_threads=1)
    model.fit(split.train)
    recs = model.recommend(split.queries, 20)
    n_items = baskets.catalog.n_items
    assert recs.shape == (len(split.queries), 20) and recs.dtype == np.int64
    assert recs.min() >= 0 and recs.max() < n_items
    assert all(np.unique(r).size == 20 for r in recs)
    assert np.array_equal(recs, model.recommend(split.queries, 20))  # deterministic
    popular = Popularity()
    popular.fit(split.train)
    # personal: lists differ between customers, and differ from the one popularity list
    assert np.unique(recs[:, :10], axis=0).shape[0] > 1
    assert not np.array_equal(recs, popular.recommend(split.queries, 20))
    assert model.report["parity"]["ranker"]["max_abs_diff"] <= TOLERANCE
    assert ndcg_at(recs, split.queries.relevant, 10) >= 0.0


def test_retrieval_and_ranker_bundles_round_trip(dataset, tmp_path) -> None:
    results = export_retail_bundles(tmp_path, dataset, SMALL)
    assert [r.bundle_dir.parent.name for r in results] == [RB.RETRIEVAL_MODEL, RB.RANKER_MODEL]
    for r, files in zip(results, (RB.RETRIEVAL_FILES, RB.RANKER_FILES), strict=True):
        assert B.read_current(tmp_path, r.bundle_dir.parent.name) == "1.0.0" == r.version
        manifest = B.verify_bundle(r.bundle_dir, required=files)
        assert set(files) <= set(manifest["files"]) and manifest["parity"]["max_abs_diff"] <= TOLERANCE
    ranker_manifest = json.loads((results[1].bundle_dir / B.MANIFEST_FILE).read_text())
    assert ranker_manifest["feature_names"] == list(FEATURE_NAMES)
    pipeline, ids, _ = RB.load_retrieval_ranker(tmp_path)
    assert ids.size == SMALL_WORLD.n_items
    customers = pipeline.stats.customers  # the TIFU neighbour table travels in item_stats.npz
    assert customers is not None and customers.n_customers > 0 and customers.n_items == ids.size
    assert pipeline.stats.first_popularity is not None and pipeline.stats.first_popularity.sum() > 0
    ranked = pipeline.rank(Histories.single(np.array([3, 4]), np.array([0, 0]), np.array([0, 0]), 86_400_000))
    assert ranked.ptr.tolist()[0] == 0 and ranked.item.size == ranked.score.size > 0
    assert np.unique(ranked.item).size == ranked.item.size and {3, 4} <= set(ranked.item.tolist())
    again = export_retail_bundles(tmp_path, dataset, replace(SMALL, seed=8))
    assert [r.version for r in again] == ["1.0.1", "1.0.1"]
    assert B.read_current(tmp_path, RB.RANKER_MODEL) == "1.0.1"


def test_a_failed_parity_gate_leaves_no_bundle(dataset, tmp_path, monkeypatch) -> None:
    import strata.model_export.retail_bundles as rb

    def broken(*args, **kwargs):
        raise ParityError("max |ORT - source| = 1 > 1e-05", field="parity")

    monkeypatch.setattr(rb, "write_onnx", broken)
    with pytest.raises(ParityError):
        export_retail_bundles(tmp_path, dataset, SMALL)
    for model in (RB.RETRIEVAL_MODEL, RB.RANKER_MODEL):
        assert [p.name for p in (tmp_path / model).iterdir()] == []


@pytest.fixture(scope="module")
def two_rankers(dataset, tmp_path_factory):
    """A registry with ranker 1.0.0 and 1.0.1 (a copy: same items), CURRENT -> 1.0.1."""
    import shutil

    root = tmp_path_factory.mktemp("registry")
    export_retail_bundles(root, dataset, SMALL)
    shutil.copytree(root / RB.RANKER_MODEL / "1.0.0", root / RB.RANKER_MODEL / "1.0.1")
    (root / RB.RANKER_MODEL / B.CURRENT_FILE).write_text("1.0.1\n")
    return root


HISTORY = Histories.single(np.array([3, 4, 3]), np.array([0, 0, 1]), np.array([0, 0, 1000]), 86_400_000)


class Broken:
    def score(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime session lost")


def test_ranker_failure_falls_back_to_the_previous_version_then_retrieval_order(two_rankers) -> None:
    pipeline, _, manifests = RB.load_retrieval_ranker(two_rankers)
    assert manifests["ranker"]["version"] == "1.0.0" and "ranker_fallback" not in manifests  # copied manifest
    assert pipeline.previous is not None
    healthy = pipeline.rank(HISTORY)
    assert healthy.scored_by == "ranker"
    pipeline.ranker = Broken()
    fallback = pipeline.rank(HISTORY)
    assert fallback.scored_by == "previous_ranker" and np.allclose(fallback.score, healthy.score)
    pipeline.previous = Broken()
    last = pipeline.rank(HISTORY)
    assert last.scored_by == "retrieval_order" and np.array_equal(last.item, healthy.item)
    assert not np.allclose(last.score, healthy.score) and pipeline.failures == 3


def test_an_unloadable_current_ranker_serves_the_previous_version(two_rankers, tmp_path) -> None:
    import shutil

    root = tmp_path / "registry"
    shutil.copytree(two_rankers, root)
    (root / RB.RANKER_MODEL / "1.0.1" / RB.RANKER_FILE).write_bytes(b"not onnx")
    pipeline, _, manifests = RB.load_retrieval_ranker(root)
    assert manifests["ranker_fallback"]["failed"] == "1.0.1" and manifests["ranker_fallback"]["serving"] == "1.0.0"
    assert "checksum mismatch" in manifests["ranker_fallback"]["reason"]
    assert pipeline.previous is None and pipeline.rank(HISTORY).scored_by == "ranker"


def test_a_ranker_ensemble_scores_the_mean_of_its_members_through_one_onnx(trained, baskets, tmp_path) -> None:
    from strata.model_export.item_stats import item_stats
    from strata.model_export.ranker import train_ranker
    from strata.model_export.retail_models import ranker_examples

    label_start = int(np.quantile(baskets.ts_ms, 0.8))
    before = baskets.before(label_start)
    x, y, ptr = ranker_examples(baskets, label_start, item_stats(before, text=trained.stats.text), trained.towers,
                                SMALL.sizes)
    one = train_ranker(x, y, ptr, replace(SMALL.ranker, seed=3))
    two = train_ranker(x, y, ptr, replace(SMALL.ranker, seed=3, ensemble=2))
    other = train_ranker(x, y, ptr, replace(SMALL.ranker, seed=4))
    assert np.allclose(two.predict(x), (one.predict(x) + other.predict(x)) / 2, atol=1e-5)
    path = export_ranker(two, tmp_path / "ranker.onnx")
    report = check_parity(path, two.predict, x, min_rows=200, input_name="features", output_name="score")
    assert report["max_abs_diff"] <= TOLERANCE


def test_the_ranker_learns_from_an_earlier_label_window_too(trained, baskets) -> None:
    # SMALL has the default two windows; the synthetic log is long enough for the earlier one
    assert SMALL.label_windows == 2 and trained.info["label_windows"] == 2
    one = train_models(baskets, replace(SMALL, label_windows=1))
    assert one.info["label_windows"] == 1 and one.info["label_queries"] < trained.info["label_queries"]


def test_concat_examples_puts_the_windows_queries_one_after_another() -> None:
    from strata.model_export.retail_models import concat_examples

    a = (np.ones((3, 2)), np.array([1.0, 0.0, 0.0]), np.array([0, 1, 3]))
    b = (np.zeros((2, 2)), np.array([0.0, 1.0]), np.array([0, 2]))
    x, y, ptr = concat_examples([a, b])
    assert x.shape == (5, 2) and y.tolist() == [1, 0, 0, 0, 1] and ptr.tolist() == [0, 1, 3, 5]
    assert concat_examples([a])[2].tolist() == [0, 1, 3]


@pytest.mark.parametrize(("env", "threads"), [(None, TRAIN_THREADS), ("1", 1), (" 3 ", 3), ("0", TRAIN_THREADS),
                                              ("two", TRAIN_THREADS), ("", TRAIN_THREADS)])
def test_training_threads_follow_omp_num_threads(monkeypatch, env, threads) -> None:
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert train_threads() == threads
