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
