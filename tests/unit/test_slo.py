"""The SLO file contract of ``strata loadtest`` (loadtest/slo.yaml) and the checker's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from strata.loadtest.slo import (
    DEFAULT_FILE,
    ENDPOINTS,
    LIMITS,
    PRODUCTION_FILE,
    TIERS,
    Entry,
    SloError,
    breaches,
    entries_of,
    evaluate,
    load_slos,
    parse_slos,
    percentile,
)


@pytest.mark.parametrize("path", [DEFAULT_FILE, PRODUCTION_FILE], ids=["machine", "production"])
def test_shipped_slo_files_follow_the_contract(path: Path) -> None:
    slos = load_slos(path)
    assert slos
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["slos"]
    for raw, slo in zip(doc["slos"], slos, strict=True):
        assert set(raw) <= {"name", "endpoint", "tier", *LIMITS}
        assert sum(k in raw for k in LIMITS) == 1
        assert slo.endpoint in (None, *ENDPOINTS) and slo.tier in (None, *TIERS)
        assert slo.line > 0
    # every endpoint and tier has a gate in both files
    assert {s.endpoint for s in slos} >= set(ENDPOINTS)
    assert {s.tier for s in slos} >= set(TIERS)


def test_the_contract_accepts_every_limit_and_optional_scope() -> None:
    doc = {"slos": [{"name": f"n{i}", key: 0.5 if key.endswith("ratio") else 10} for i, key in enumerate(LIMITS)]}
    slos = parse_slos(doc)
    assert [s.limit_key for s in slos] == list(LIMITS)
    assert all(s.endpoint is None and s.tier is None for s in slos)


@pytest.mark.parametrize("entry, words", [
    ({"name": "a", "endpoint": "recommend"}, ["slos[0] (a)", "exactly one limit", "got none"]),
    ({"name": "a", "p99_ms": 5, "p95_ms": 3}, ["slos[0] (a)", "exactly one limit", "p95_ms, p99_ms"]),
    ({"name": "a", "p99_ms": 5, "endpoint": "search"}, ["slos[0] (a)", "endpoint", "'search'"]),
    ({"name": "a", "p99_ms": 5, "tier": "cdn"}, ["slos[0] (a)", "tier must be one of edge, streaming, origin"]),
    ({"name": "a", "p99": 5}, ["slos[0] (a)", "unknown key 'p99'"]),
    ({"p99_ms": 5}, ["slos[0]", "name is required"]),
    ({"name": "a", "p99_ms": "fast"}, ["slos[0] (a)", "p99_ms must be a number"]),
    ({"name": "a", "p99_ms": True}, ["p99_ms must be a number"]),
    ({"name": "a", "p99_ms": -1}, ["p99_ms must be positive"]),
    ({"name": "a", "max_error_ratio": 1.5}, ["max_error_ratio must be between 0 and 1"]),
    ("p99_ms: 5", ["slos[0]", "must be a mapping"]),
])
def test_a_bad_entry_is_named_with_its_field(entry, words) -> None:
    with pytest.raises(SloError) as err:
        parse_slos({"slos": [entry]}, "gate.yaml")
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    assert str(err.value).startswith("gate.yaml: ") or "gate.yaml" in str(err.value)


def test_the_second_entry_is_named_and_duplicate_names_are_refused() -> None:
    with pytest.raises(SloError, match=r"slos\[1\] \(b\): tier"):
        parse_slos({"slos": [{"name": "a", "p50_ms": 1}, {"name": "b", "p50_ms": 1, "tier": "x"}]})
    with pytest.raises(SloError, match=r"slos\[1\] \(a\): name 'a' is used twice"):
        parse_slos({"slos": [{"name": "a", "p50_ms": 1}, {"name": "a", "p99_ms": 1}]})


@pytest.mark.parametrize("doc", [None, [], {"slo": []}, {"slos": []}, {"slos": {}}, {"slos": [], "x": 1}])
def test_the_top_level_is_one_slos_list(doc) -> None:
    with pytest.raises(SloError, match="slos"):
        parse_slos(doc)


def test_load_names_the_file_and_the_line(tmp_path: Path) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text("slos:\n  - name: ok\n    p99_ms: 5\n  - name: bad\n    p99_ms: 5\n    min_rps: 3\n")
    with pytest.raises(SloError) as err:
        load_slos(f)
    assert str(f) in str(err.value) and "slos[1] (bad)" in str(err.value)
    f.write_text("slos:\n  - name: ok\n    p99_ms: 5\n  - {name: two, min_rps: 3}\n")
    assert [s.line for s in load_slos(f)] == [2, 4]
    f.write_text("slos: [")
    with pytest.raises(SloError, match="not valid YAML"):
        load_slos(f)
    with pytest.raises(SloError, match="cannot read"):
        load_slos(tmp_path / "missing.yaml")


def _entry(endpoint: str, tier: str, times: dict[int, int], failures: int = 0, degraded: bool = False) -> Entry:
    return Entry(endpoint, tier, degraded, sum(times.values()), failures, times)


def test_percentiles_merge_every_entry_an_slo_covers() -> None:
    entries = [_entry("recommend", "edge", {1: 90, 2: 5}), _entry("recommend", "edge", {50: 5}, degraded=True),
               _entry("recommend", "origin", {100: 10}, failures=1), _entry("events", "streaming", {3: 10})]
    slos = parse_slos({"slos": [
        {"name": "edge p50", "endpoint": "recommend", "tier": "edge", "p50_ms": 1},
        {"name": "edge p95", "endpoint": "recommend", "tier": "edge", "p95_ms": 2},
        {"name": "edge p99", "endpoint": "recommend", "tier": "edge", "p99_ms": 10},
        {"name": "edge degraded", "tier": "edge", "max_degraded_ratio": 0.04},
        {"name": "all errors", "max_error_ratio": 0.01},
        {"name": "origin rps", "tier": "origin", "min_rps": 2},
        {"name": "explain p99", "endpoint": "explain", "p99_ms": 10},
    ]})
    driven = {("recommend", "edge"), ("recommend", "origin"), ("events", "streaming")}
    v = {x.slo.name: x for x in evaluate(slos, entries, seconds=10.0, driven=driven)}
    assert v["edge p50"].measured == 1 and v["edge p50"].passed
    assert v["edge p95"].measured == 2 and v["edge p95"].passed        # 95 of 100 at or below 2 ms
    assert v["edge p99"].measured == 50 and v["edge p99"].passed is False
    assert v["edge degraded"].measured == 0.05 and v["edge degraded"].passed is False
    assert v["all errors"].measured == pytest.approx(1 / 120) and v["all errors"].passed
    assert v["origin rps"].measured == 1.0 and v["origin rps"].passed is False
    assert v["explain p99"].passed is None and v["explain p99"].note == "not driven by this run"
    assert [b.slo.name for b in breaches(list(v.values()))] == ["edge p99", "edge degraded", "origin rps"]


def test_an_slo_with_no_requests_where_its_caller_ran_is_a_breach() -> None:
    slos = parse_slos({"slos": [{"name": "origin p99", "tier": "origin", "p99_ms": 10}]})
    (v,) = evaluate(slos, [_entry("recommend", "edge", {1: 3})], 5.0, driven={("recommend", "origin")})
    assert v.passed is False and v.note == "no requests" and v.measured is None


def test_percentile_is_locusts_and_entries_follow_the_naming() -> None:
    assert percentile({}, 50) is None
    assert percentile({3: 1}, 99.9) == 3
    assert percentile({1: 50, 9: 50}, 50) == 1 and percentile({1: 50, 9: 50}, 50.1) == 9
    stats = [{"name": "recommend [edge]", "num_requests": 2, "num_failures": 0, "response_times": {"1": 2}},
             {"name": "recommend [edge, degraded]", "num_requests": 1, "num_failures": 0, "response_times": {"4": 1}},
             {"name": "Aggregated", "num_requests": 3, "num_failures": 0, "response_times": {}},
             {"name": "/v1/recommend", "num_requests": 3, "num_failures": 0, "response_times": {}}]
    got = entries_of(stats)
    assert [(e.endpoint, e.tier, e.degraded, e.requests) for e in got] == [
        ("recommend", "edge", False, 2), ("recommend", "edge", True, 1)]


def test_the_summary_checker_of_a_distributed_run(tmp_path: Path, capsys) -> None:
    from strata.loadtest.slo import main

    summary = {"start_time": 0.0, "last_request_timestamp": 10.0, "end_time": 10.5, "entries": [
        {"name": "recommend [edge]", "num_requests": 100, "num_failures": 0, "response_times": {"2": 99, "40": 1}}]}
    (tmp_path / "s.json").write_text(__import__("json").dumps(summary))
    (tmp_path / "gate.yaml").write_text("slos:\n  - {name: p99, tier: edge, p99_ms: 5}\n  - {name: rps, min_rps: 5}\n")
    assert main([str(tmp_path / "s.json"), "--slo", str(tmp_path / "gate.yaml")]) == 0
    assert "PASS  gate.yaml:2: p99" in capsys.readouterr().out
    (tmp_path / "gate.yaml").write_text("slos:\n  - {name: p99, tier: edge, p99_ms: 5}\n  - {name: rps, min_rps: 50}\n")
    assert main([str(tmp_path / "s.json"), "--slo", str(tmp_path / "gate.yaml")]) == 1
    assert "FAIL  gate.yaml:3: rps: all: min_rps >= 50, measured 10" in capsys.readouterr().out
    (tmp_path / "gate.yaml").write_text("slos: 3\n")
    assert main([str(tmp_path / "s.json"), "--slo", str(tmp_path / "gate.yaml")]) == 2


@pytest.mark.parametrize("path", [DEFAULT_FILE, PRODUCTION_FILE], ids=["machine", "production"])
def test_no_throughput_slo_depends_on_which_tier_answered(path: Path) -> None:
    """Which tier answers an edge request is the router's choice, not a capacity: a throughput floor per
    answering tier failed a healthy run when the router escalated more of it."""
    assert all(s.tier is None for s in load_slos(path) if s.limit_key == "min_rps")


def test_the_default_gate_passes_a_healthy_run_that_escalated_two_thirds_of_the_edges_requests() -> None:
    # the 20 s `strata loadtest` of a CI run (2026-12-07): every latency, error and degraded figure well inside
    # the gate, the edge answering 1,961 requests itself and the origin 3,913 (most of them escalated by the edge)
    seconds = 19.7
    entries = [_entry("recommend", "edge", {2: 1930, 13: 8}), _entry("recommend", "edge", {3: 23}, degraded=True),
               _entry("recommend", "origin", {8: 3000, 30: 363}), _entry("recommend", "origin", {9: 520}, degraded=True),
               _entry("recommend", "streaming", {7: 89}), _entry("explain", "origin", {6: 25}),
               _entry("events", "streaming", {7: 210})]
    verdicts = evaluate(load_slos(DEFAULT_FILE), entries, seconds)
    assert not breaches(verdicts), [v.to_json() for v in breaches(verdicts)]
    (rps,) = [v for v in verdicts if v.slo.limit_key == "min_rps" and v.slo.endpoint == "recommend"]
    assert rps.measured == pytest.approx(sum(e.requests for e in entries if e.endpoint == "recommend") / seconds)
