"""``strata bench origin`` end to end on a small export: every figure it reports is there and sane, the path
measured is the two-tower ANN + deep ranker, and a registry without those bundles is refused with the
command that makes one (the speed itself is only ever read from a real run, never asserted)."""

from __future__ import annotations

import pytest

from strata.loadtest.bench_origin import run
from strata.shared.errors import ConfigError


def test_bench_measures_the_two_tower_ann_and_deep_ranker_path(models_registry_dir) -> None:
    r = run(models_registry_dir, min_items=500, requests=20, warmup=3, recall_queries=3)
    assert r["path"] == "two_tower_ann+deep_ranker"
    assert r["model_items"] == r["in_catalog"] == 500 and r["versions"] == {"retrieval": "1.0.0", "ranker": "1.0.0"}
    for key in ("p50_ms", "p95_ms", "p99_ms", "ann_recall_at_500"):
        assert r[key] > 0, key
    assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert 0.0 < r["ann_recall_at_500"] <= 1.0 and r["exact_truth_numpy_agreement"] == 1.0
    assert r["ann_recall_at_500_min"] <= r["ann_recall_at_500_p5"] <= r["ann_recall_at_500"]
    # the served search at test size (ef above the catalog): the ANN is complete, the check sends none to exact
    assert r["served_recall_at_500_min"] == 1.0 and r["checked_exact_share"] == 0.0
    assert r["scored_by"] == {"ranker": 23}            # every request (warm-up included) ranked by the deep ranker
    assert abs(sum(r["stage_share"].values()) - 1.0) < 1e-3
    assert r["stage_mean_ms"]["two_tower_source"] > 0 and r["stage_mean_ms"]["rank"] > 0
    assert r["session_only"]["scored_by"] == {"ranker": 10}
    assert r["edge_scorer_path"]["scored_by"] == {"edge_scorer": 10}
    assert set(r["missed"]) <= {"p95_ms", "ann_recall_at_500"}


def test_a_catalog_below_the_target_size_is_a_miss(models_registry_dir) -> None:
    r = run(models_registry_dir, min_items=100_000, requests=5, warmup=0, recall_queries=1)
    assert "model_items" in r["missed"]


def test_a_registry_without_the_models_is_refused_with_the_export_command(registry_dir) -> None:
    with pytest.raises(ConfigError, match="strata export --items 100000"):
        run(registry_dir, requests=5, warmup=0, recall_queries=1)
