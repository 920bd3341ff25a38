"""``strata eval`` end to end on a small generated Online Retail file, and its bad inputs (exit 2, one line)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from strata.deploy.cli import app
from strata.model_export.evaluation.metrics import METRICS
from strata.model_export.evaluation.models import DEFAULT_MODELS

runner = CliRunner()
WORDS = ["CANDLE", "BAG", "CARD", "MUG", "SIGN", "FRAME"]


@pytest.fixture(scope="module")
def retail_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 invoices Aug-Dec 2011; customers 40-49 buy only after the cut; each customer has a taste."""
    rng = np.random.default_rng(11)
    rows = []
    start = datetime(2011, 8, 1, 9, 0)
    for n in range(600):
        day = int(rng.integers(0, 130))
        customer = int(rng.integers(0, 40)) if day < 92 else int(rng.integers(0, 50))
        items = {(customer * 3 + int(rng.integers(0, 6))) % 60 for _ in range(4)}
        for item in sorted(items):
            rows.append((f"{540000 + n}", f"{20000 + item}", f"{WORDS[item % 6]} NO {item}", 2,
                         start + timedelta(days=day, minutes=n), 1.25, 12000 + customer, "United Kingdom"))
    cols = list(zip(*rows, strict=True))
    table = pa.table({"InvoiceNo": pa.array(cols[0]), "StockCode": pa.array(cols[1]),
                      "Description": pa.array(cols[2]), "Quantity": pa.array(cols[3], pa.int64()),
                      "InvoiceDate": pa.array(cols[4], pa.timestamp("us")),
                      "UnitPrice": pa.array(cols[5], pa.float64()), "CustomerID": pa.array(cols[6], pa.int64()),
                      "Country": pa.array(cols[7])})
    path = tmp_path_factory.mktemp("retail") / "retail.parquet"
    pq.write_table(table, path)
    return path


def test_eval_prints_the_table_and_writes_json_and_plot(retail_file: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "out" / "eval.json", tmp_path / "recall.png"
    result = runner.invoke(app, ["eval", "--data", "online-retail", str(retail_file), "--json", str(out),
                                 "--plot", str(png)])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(out.read_text())
    assert list(report["models"]) == list(DEFAULT_MODELS)  # the baselines and, with torch, strata
    for segments in report["models"].values():
        assert list(segments) == ["returning", "unseen"]
        assert all(tuple(metrics) == METRICS for metrics in segments.values())
    split = report["split"]
    assert split["cut"] == "2011-11-01" and split["test"]["unseen"]["invoices"] > 0
    assert split["train"]["lines"] >= split["train"]["pairs"] > 0
    assert report["cleaning"]["rows_in"] == report["cleaning"]["rows_out"]  # nothing to clean in this file
    als = report["tuning"]["implicit_als"]
    assert set(als["params"]) == {"factors", "regularization", "alpha", "weighting", "iterations"}
    assert als["validation_ndcg@10"] == max(t["score"] for t in als["trials"])
    for name in ("tifu_knn", "upcf"):  # the published next-basket baselines, tuned on validation
        assert report["tuning"][name]["grid"] and set(report["tuning"][name]["params"]) == set(
            report["tuning"][name]["grid"])
    assert report["seeds"] == [7, 8, 9] and [r["seed"] for r in report["runs"]["implicit_als"]] == [7, 8, 9]
    assert len(report["runs"]["tifu_knn"]) == 1 and report["spread"]["tifu_knn"]["returning"]["ndcg@10"] == 0.0
    assert split["test"]["unseen"]["explore_invoices"] > 0  # the returning customers here only repeat
    assert report["models"]["upcf"]["unseen"]["explore_recall@20"] is not None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "implicit_als" in result.output and "returning" in result.output and "ndcg@10" in result.output


def test_eval_runs_a_subset_at_another_cut(retail_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "--data", "online-retail", str(retail_file), "--cut", "2011-10-15",
                                 "--models", "popularity,repeat", "--json", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(out.read_text())
    assert list(report["models"]) == ["popularity", "repeat"] and report["tuning"] == {}
    assert report["split"]["cut"] == "2011-10-15"


@pytest.mark.parametrize(("args", "message"), [
    (["online-retail", "{missing}"], "strata eval: bad config: no such data file: {missing}"),
    (["amazon", "{file}"], "strata eval: bad config: unknown dataset 'amazon'; valid: online-retail"),
    (["online-retail", "{file}", "--cut", "2011-02-30"],
     "strata eval: bad config: must be an ISO date like 2011-11-01, got '2011-02-30'"),
    (["online-retail", "{file}", "--cut", "2013-01-01"],
     "strata eval: bad config: cut 2013-01-01 leaves no test invoices after it (data runs "),
    (["online-retail", "{file}", "--models", "popularity,nope"], "strata eval: bad config: unknown model 'nope'"),
    (["online-retail", "{file}", "--models", "popularity", "--json", "{dir}"], "strata eval: bad config: cannot write"),
])
def test_bad_inputs_exit_2_with_one_line(retail_file: Path, tmp_path: Path, args: list[str], message: str) -> None:
    paths = {"missing": str(tmp_path / "nope.parquet"), "file": str(retail_file), "dir": str(tmp_path)}
    result = runner.invoke(app, ["eval", "--data", *[a.format(**paths) for a in args]])
    assert result.exit_code == 2
    assert result.stderr.startswith(message.format(**paths)) and result.stderr.count("\n") == 1
