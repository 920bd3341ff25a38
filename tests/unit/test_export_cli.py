"""``strata export`` bad inputs: exit 2 with one line naming the field, before any training starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from strata.deploy.cli import app

runner = CliRunner()


@pytest.mark.parametrize(("data", "message"), [
    (["amazon", "{missing}"], "strata export: bad config: unknown dataset 'amazon'; valid: synthetic, online-retail"),
    (["online-retail", "{missing}"], "strata export: bad config: no such data file: {missing}"),
])
def test_bad_dataset_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, data: list[str], message: str) -> None:
    paths = {"missing": str(tmp_path / "nope.parquet")}
    out = tmp_path / "registry"
    result = runner.invoke(app, ["export", "--out", str(out), "--data", *[a.format(**paths) for a in data]])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message.format(**paths)) and result.stderr.count("\n") == 1
    assert not (out / "edge-scorer").exists() or not any((out / "edge-scorer").iterdir())


def test_bench_origin_exports_its_bundles_into_a_registry_without_them(tmp_path: Path, monkeypatch) -> None:
    """As strata bench edge does for its scorer: a registry missing the edge-scorer, retrieval or ranker
    gets every bundle exported (at --items) before the run; a complete one is used as it is."""
    from strata.deploy import exporting
    from strata.loadtest import bench_origin

    exported: list[tuple[Path, int]] = []

    def fake_export(out, console, request):
        exported.append((out, request.n_items))
        for model in ("edge-scorer", "retrieval", "ranker"):
            (out / model).mkdir(parents=True, exist_ok=True)
            (out / model / "CURRENT").write_text("1.0.0\n")
        return []

    monkeypatch.setattr(exporting, "export_all_with_progress", fake_export)
    monkeypatch.setattr(bench_origin, "run", lambda registry, **kw: {"missed": ["stopped here"]})
    monkeypatch.setattr(bench_origin, "print_table", lambda result, console: None)
    for _ in range(2):
        result = runner.invoke(app, ["bench", "origin", "--registry", str(tmp_path), "--items", "500"])
        assert result.exit_code == 1, result.output          # the fake run "missed" its target
    assert exported == [(tmp_path.resolve(), 500)]            # the second run found the bundles
