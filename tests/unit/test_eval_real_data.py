"""On the real UCI Online Retail file (CI has it at ../shared; skipped with a reason elsewhere).

Cheap on purpose (the loader, the report, the split and two non-learned baselines, well under a minute):
the full evaluation with ALS tuning is ``strata eval``, a command, not a test. The expected figures
are the dataset README's (an independent count), not outputs of this code.
"""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.datasets.online_retail import DEFAULT_PATH, load_online_retail
from strata.model_export.evaluation.baskets import baskets_from_retail
from strata.model_export.evaluation.harness import EvaluationConfig, evaluate
from strata.model_export.evaluation.split import parse_cut, temporal_split

pytestmark = pytest.mark.skipif(not DEFAULT_PATH.is_file(),
                                reason=f"UCI Online Retail not found at {DEFAULT_PATH} (the team data folder)")


@pytest.fixture(scope="module")
def log():
    return load_online_retail(DEFAULT_PATH)


def test_cleaning_report_matches_the_dataset_readme(log) -> None:
    report = log.report
    assert report["sha256"] == "cfd3f1d4768f7f952ff134116828c8b5adc668bb3d04740be9c09baf76a11361"
    assert report["rows_in"] == 541_909
    removed = {step["rule"]: step["rows_removed"] for step in report["rules"]}
    assert removed["cancellation"] == 9_288 and removed["adjustment"] == 3  # README: C and A rows
    assert report["rows_in"] - sum(removed.values()) == report["rows_out"] == log.item.size
    assert report["customers"] <= 4_372 and report["items"] <= 4_070  # README: distinct in the raw file
    assert report["categories"]["n_categories"] == 24 and sum(report["categories"]["sizes"]) == report["items"]


def test_every_derived_category_has_a_readable_distinct_name(log) -> None:
    from strata.model_export.datasets.interface import OnlineRetail
    from strata.model_export.serving_catalog import retail_serving_catalog

    names = log.report["categories"]["names"]
    assert len(names) == 24 == len(set(names)) and not any("cluster" in n or n.startswith("other") for n in names)
    assert "christmas tree" in names  # the Christmas cluster, as the titles say
    served = retail_serving_catalog(log).columns["category"]
    labels, _ = OnlineRetail(DEFAULT_PATH).item_labels(baskets_from_retail(log).catalog)
    assert served.tolist() == labels.tolist() == [names[c] for c in log.category]  # catalog == ANN payload


def test_split_has_no_leakage_and_repeat_beats_popularity_on_returning(log) -> None:
    baskets = baskets_from_retail(log)
    queries = temporal_split(baskets, parse_cut("2011-11-01")).queries
    rows, pos = queries.history_positions()
    assert (queries.log.ts_ms[pos] < queries.at_ms[rows]).all()
    assert (queries.log.customer[pos] == queries.customer[rows]).all()
    assert queries.known.any() and (~queries.known).any()
    report = evaluate(baskets, EvaluationConfig(models=("popularity", "repeat")))
    test = report["split"]["test"]
    assert test["returning"]["invoices"] + test["unseen"]["invoices"] == len(queries)
    ndcg = {m: report["models"][m]["returning"]["ndcg@10"] for m in ("popularity", "repeat")}
    assert ndcg["repeat"] > ndcg["popularity"]  # the premise: personal frequency is hard to beat
    assert np.isclose(report["models"]["popularity"]["returning"]["coverage"], 10 / log.item_id.size)
