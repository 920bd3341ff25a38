"""The capacity model (strata capacity): figures are read from benchmark result files and name their source,
replica counts cover the load with the least replicas at the target utilisation, partitions follow the
processors, memory scales with its drivers, and the CLI answers (tables, --json, bad input -> exit 2)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from strata.deploy import capacity as cap
from strata.deploy.cli import app

COMMITTED = cap.committed_results()
# a capacity.json as bench_capacity writes it (the numbers are inputs of these tests, not results)
CAPACITY_JSON = {
    "machine": {"date": "2026-12-06T00:00:00+00:00"},
    "tier2": {"cpu_us_per_request": 1000.0, "rps": 900.0, "server_cpu": 0.9},
    "ingest_single": {"cpu_us_per_request": 250.0},
    "memory": {"world": {"sessions": 100}, "session_bytes": 700.0, "user_bytes": 1300.0, "impression_bytes": 400.0,
               "seen_id_bytes": 70.0, "overhead_factor": 1.25, "log_event_bytes": 230.0,
               "log_impression_bytes": 490.0},
}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for name in ("bench-edge.json", "bench-streaming.json", "bench-origin.json"):
        shutil.copy(COMMITTED / name, tmp_path / name)
    (tmp_path / "capacity.json").write_text(json.dumps(CAPACITY_JSON))
    return tmp_path


def test_every_figure_names_the_file_it_comes_from(results: Path) -> None:
    figs = cap.load_figures([results])
    assert {"edge_miss_us", "edge_hit_us", "tier2_us", "origin_us", "ingest_post_us", "ingest_event_us",
            "processor_us", "valkey_us",
            "session_bytes", "user_bytes", "impression_bytes", "seen_id_bytes"} <= set(figs)
    for name, f in figs.items():
        assert f.value > 0, name
        assert f.source.split(" ")[0].endswith(".json"), f.source
    edge = json.loads((results / "bench-edge.json").read_text())
    assert figs["edge_miss_us"].value == pytest.approx(
        edge["edge_store_nocache_server_cpu_c8"] / edge["edge_store_nocache_rps_c8"] * 1e6)
    assert figs["edge_hit_us"].value < figs["edge_miss_us"].value       # a cache hit costs less than a miss
    assert figs["tier2_us"].value == CAPACITY_JSON["tier2"]["cpu_us_per_request"]


def test_the_first_directory_wins(results: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("measured")
    (other / "capacity.json").write_text(json.dumps({**CAPACITY_JSON, "tier2": {**CAPACITY_JSON["tier2"],
                                                                                "cpu_us_per_request": 500.0}}))
    assert cap.load_figures([other, results])["tier2_us"].value == 500.0
    with pytest.raises(FileNotFoundError, match="bench-edge.json"):
        cap.load_figures([other])


@pytest.mark.parametrize("rps,events,sessions", [(100_000, 50_000, 50_000_000), (3_000, 800, 200_000), (0, 0, 0)])
def test_replicas_are_the_fewest_that_carry_the_load(results: Path, rps: float, events: float, sessions: int) -> None:
    figs = cap.load_figures([results])
    load = cap.Load(rps, events, sessions)
    p = cap.plan(load, figs)
    work = {"edge": rps, "ingest": events, "tier2": rps * load.streaming_share, "origin": rps * load.origin_share,
            "processor": events + rps}
    for tier, w in work.items():
        n, per = p[tier]["replicas"], p[tier]["per_replica_at_target"]
        floor = 1 if tier == "processor" else load.min_replicas
        assert n * per >= w * (1 - 1e-9), tier
        assert n == floor or (n - 1) * per < w, tier
    assert p["kafka"]["partitions"] == p["processor"]["replicas"]
    v = p["valkey"]
    assert v["shards"] == max(v["by_memory"], v["by_write_cpu"], 1)
    assert v["by_memory"] * load.shard_memory_gb >= v["memory_gb"]["total"] * (1 - 1e-6)


def test_memory_scales_with_its_drivers(results: Path) -> None:
    figs = cap.load_figures([results])
    base = cap.Load(10_000, 5_000, 1_000_000)
    gb = cap.plan(base, figs)["valkey"]["memory_gb"]
    more = cap.plan(dataclasses.replace(base, sessions=2_000_000), figs)["valkey"]["memory_gb"]
    assert more["sessions"] == pytest.approx(2 * gb["sessions"], rel=0.01)
    assert more["dedup_ids"] == gb["dedup_ids"]
    short = cap.plan(dataclasses.replace(base, dedup_ttl_s=base.dedup_ttl_s / 7), figs)["valkey"]["memory_gb"]
    assert short["dedup_ids"] == pytest.approx(gb["dedup_ids"] / 7, rel=0.01)
    off = cap.plan(dataclasses.replace(base, impressions=False), figs)
    assert off["valkey"]["memory_gb"]["impressions"] == 0
    assert off["kafka"]["events_per_s"] == base.events_per_s
    want = (1_000_000 * CAPACITY_JSON["memory"]["session_bytes"] * CAPACITY_JSON["memory"]["overhead_factor"]) / cap.GB
    assert gb["sessions"] == pytest.approx(want, rel=0.01)


def test_cache_hits_need_fewer_edges(results: Path) -> None:
    figs = cap.load_figures([results])
    cold = cap.plan(cap.Load(100_000, 0, 0), figs)["edge"]["replicas"]
    warm = cap.plan(cap.Load(100_000, 0, 0, edge_cache_hit=0.9), figs)["edge"]["replicas"]
    assert warm < cold


def test_batched_events_need_fewer_ingest_replicas(results: Path) -> None:
    figs = cap.load_figures([results])
    one = cap.plan(cap.Load(0, 200_000, 0), figs)["ingest"]
    batched = cap.plan(cap.Load(0, 200_000, 0, events_per_post=100), figs)["ingest"]
    assert batched["busy_cores"] < one["busy_cores"]
    streaming = json.loads((results / "bench-streaming.json").read_text())
    top = max(streaming["points"], key=lambda p: p["sustained_events_per_s"])
    at_bench_batch = cap.plan(cap.Load(0, top["sustained_events_per_s"], 0, events_per_post=streaming["batch"]), figs)
    assert at_bench_batch["ingest"]["busy_cores"] == pytest.approx(top["cpu_share_of_one_core"]["ingest"], rel=1e-6)


def test_escalation_beyond_the_routers_cap_is_refused(results: Path) -> None:
    with pytest.raises(ValueError, match="max_escalation_share"):
        cap.plan(cap.Load(1000, 0, 0, streaming_share=0.5, origin_share=0.5), cap.load_figures([results]))


def test_cli_defaults_are_the_models() -> None:
    cmd = typer.main.get_command(app).get_command(None, "capacity")
    defaults = {p.name: p.default for p in cmd.params}
    for f in dataclasses.fields(cap.Load):
        if f.name in defaults and f.default is not dataclasses.MISSING:
            assert defaults[f.name] == f.default, f.name


def test_cli_json_and_tables(results: Path) -> None:
    runner = CliRunner()
    args = ["capacity", "--recommend-rps", "100000", "--events-per-s", "50000", "--sessions", "50000000",
            "--results", str(results)]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.stdout)
    assert rep["inputs"]["recommend_rps"] == 100_000
    for tier in ("edge", "ingest", "tier2", "origin", "processor"):
        assert rep["plan"][tier]["replicas"] >= 1
    assert rep["plan"]["kafka"]["partitions"] >= 1 and rep["plan"]["valkey"]["shards"] >= 1
    assert all("source" in f for f in rep["figures"].values())
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "Valkey shards" in out.stdout and "capacity.json" in out.stdout
    bad = runner.invoke(app, [*args, "--streaming-share", "0.9"])
    assert bad.exit_code == 2 and "max_escalation_share" in bad.output


def test_committed_results_give_a_plan() -> None:
    """The figures shipped in loadtest/results are complete (docs/capacity.md is computed from them)."""
    rep = cap.report(cap.Load(100_000, 50_000, 50_000_000), cap.load_figures([COMMITTED]))
    assert math.isfinite(rep["plan"]["cores"]) and rep["plan"]["valkey"]["memory_gb"]["total"] > 0
