"""``strata bench origin`` end to end on a small catalog: every figure it reports is there and sane (the
speed itself is only ever read from a real run, never asserted)."""

from __future__ import annotations

from loadtest.bench_origin import run, synthetic_catalog


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
