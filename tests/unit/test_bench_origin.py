"""``strata bench origin`` end to end on a small catalog: every figure it reports is there and sane (the
speed itself is only ever read from a real run, never asserted)."""

from __future__ import annotations

from loadtest.bench_origin import _models_latency, run, synthetic_catalog


def test_synthetic_catalog_is_deterministic_and_complete() -> None:
    a, pools = synthetic_catalog(500, seed=3)
    b, _ = synthetic_catalog(500, seed=3)
    assert a.item_ids == b.item_ids and a.titles == b.titles
    assert len(a) == 500 and len(pools["default"]) == 500
    assert a.age_restricted.any() and not a.age_restricted.all()


def test_bench_reports_latency_recall_and_stage_shares(registry_dir) -> None:
    r = run(registry_dir, n_items=1500, requests=20, warmup=3, recall_queries=3)
    for key in ("p50_ms", "p95_ms", "p99_ms", "ann_recall_at_500"):
        assert r[key] >= 0, key
    assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    assert 0.0 <= r["ann_recall_at_500"] <= 1.0
    assert abs(sum(r["stage_share"].values()) - 1.0) < 1e-3
    assert {"ann_source", "guardrails", "rank", "mmr", "select"} <= set(r["stage_share"])
    assert set(r["missed"]) <= {"p95_ms", "ann_recall_at_500"}
    assert r["models"] is None                    # no retrieval/ranker bundles in this registry


def test_bench_times_the_two_tower_and_deep_ranker_path(models_registry_dir) -> None:
    m = _models_latency(models_registry_dir, requests=10, warmup=2, seed=7)
    assert m is not None and m["versions"] == {"retrieval": "1.0.0", "ranker": "1.0.0"}
    assert m["n_items"] == m["model_items"] == 500
    assert 0 < m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"]
    assert m["stage_mean_ms"]["two_tower_source"] > 0 and m["stage_mean_ms"]["rank"] > 0
    assert m["scored_by"] == {"ranker": 12}       # every request (warm-up included) ranked by the deep ranker
