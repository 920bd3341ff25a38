"""The Online Retail cleaning report (rows out per rule, in order), derived categories, and bad files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from strata.model_export.datasets.item_categories import category_names, derive_categories
from strata.model_export.datasets.online_retail import CLEANING_RULES, DatasetError, load_online_retail
from strata.model_export.evaluation.baskets import baskets_from_retail
from strata.shared.errors import ConfigError

T = datetime(2011, 6, 2, 10, 0)
ROWS = [
    # InvoiceNo, StockCode, Description, Quantity, UnitPrice, CustomerID, Country
    ("536365", "85123A", "WHITE HEART", 6, 2.55, 17850, "United Kingdom"),
    ("536365", "71053", "WHITE LANTERN", 6, 3.39, 17850, "United Kingdom"),
    ("536365", "71053", "WHITE LANTERN", 6, 3.39, 17850, "United Kingdom"),  # exact duplicate
    ("536366", "85123A", "CREAM HEART", 2, 2.95, 13047, "France"),
    ("536367", "85123A", "WHITE HEART", 1, 3.15, 13047, "France"),
    ("C536368", "71053", "WHITE LANTERN", -1, 3.39, 13047, "France"),  # cancellation
    ("C536375", "71053", "WHITE LANTERN", -1, 3.39, None, "France"),  # cancellation AND no customer
    ("A536369", "71053", "Adjust bad debt", 1, 11062.06, 13047, "France"),  # adjustment
    ("536370", "POST", "POSTAGE", 3, 18.0, 12583, "France"),  # not a product
    ("536371", "22632", None, 0, 1.0, 12583, "France"),  # zero quantity
    ("536372", "22632", "HAND WARMER", 1, 0.0, 12583, "France"),  # zero price
    ("536373", "22633", "HAND WARMER UNION JACK", 4, 1.85, None, "France"),  # no customer
    ("536374", "22633", None, 2, 1.65, 12583, "France"),  # kept, no description
]
REMOVED = {"cancellation": 2, "adjustment": 1, "no_customer": 1, "non_product_code": 1,
           "non_positive_quantity": 1, "non_positive_price": 1, "exact_duplicate": 1}


def _write(path: Path, rows: list[tuple] = ROWS, drop: str | None = None) -> Path:
    cols = list(zip(*rows, strict=True))
    table = pa.table({
        "InvoiceNo": pa.array(cols[0]), "StockCode": pa.array(cols[1]), "Description": pa.array(cols[2], pa.string()),
        "Quantity": pa.array(cols[3], pa.int64()), "InvoiceDate": pa.array([T] * len(rows), pa.timestamp("us")),
        "UnitPrice": pa.array(cols[4], pa.float64()), "CustomerID": pa.array(cols[5], pa.int64()),
        "Country": pa.array(cols[6])})
    pq.write_table(table.drop_columns([drop]) if drop else table, path)
    return path


def test_report_counts_rows_out_per_rule_in_order(tmp_path: Path) -> None:
    log = load_online_retail(_write(tmp_path / "r.parquet"))
    report = log.report
    assert [step["rule"] for step in report["rules"]] == [rule for rule, _ in CLEANING_RULES]
    assert {step["rule"]: step["rows_removed"] for step in report["rules"]} == REMOVED
    assert report["rows_in"] == len(ROWS) and report["rows_out"] == len(ROWS) - sum(REMOVED.values()) == 5
    assert [step["rows_left"] for step in report["rules"]] == [11, 10, 9, 8, 7, 6, 5]
    assert report["items"] == 3 and report["customers"] == 3 and report["invoices"] == 4
    assert report["categories"]["method"].startswith("tfidf")
    assert log.country_name.tolist() == ["France", "United Kingdom"]
    assert load_online_retail(_write(tmp_path / "again.parquet")).report | {"source": "r.parquet"} == report


def test_baskets_from_the_log_dedupe_lines_per_invoice(tmp_path: Path) -> None:
    b = baskets_from_retail(load_online_retail(_write(tmp_path / "r.parquet")))
    assert len(b) == 5  # 536365 x2 items, 536366, 536367, 536374
    assert b.n_invoices() == 4 and b.popularity().tolist() == [1, 1, 3]


def test_categories_follow_product_type_not_colour_and_are_deterministic() -> None:
    titles = np.array(["RED CANDLE HOLDER", "WHITE CANDLE HOLDER", "PINK CANDLE HOLDER T-LIGHT", "JUMBO LUNCH BAG",
                       "RED LUNCH BAG", "LUNCH BAG SPOTS"])
    labels, how = derive_categories(titles, n_categories=2, seed=3)
    assert len(set(labels[:3].tolist())) == 1 and len(set(labels[3:].tolist())) == 1 and labels[0] != labels[3]
    assert derive_categories(titles, n_categories=2, seed=3)[0].tolist() == labels.tolist()
    assert sorted(how["sizes"]) == [3, 3] and how["n_categories"] == 2


def test_category_names_are_the_most_distinctive_title_words_in_title_order() -> None:
    titles = np.array(["CHRISTMAS TREE DECORATIONS", "BOX OF 6 CHRISTMAS CAKE DECORATIONS", "CHRISTMAS STAR DECORATIONS",
                       "JUMBO LUNCH BAG", "RED LUNCH BAG", "LUNCH BAG SPOTS", "CAKE TIN"])
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    # "christmas" and "decorations" are in every title of cluster 0 and nowhere else; colour words never count
    assert category_names(titles, labels).tolist() == ["christmas decorations", "lunch bag", "cake tin"]
    same = np.array(["LUNCH BAG", "LUNCH BAG", "LUNCH BOX"])
    names = category_names(same, np.array([0, 1, 2]))
    assert len(set(names.tolist())) == 3 and not any("cluster" in n for n in names)  # clashes get another word
    assert category_names(np.array(["", "?"]), np.array([0, 1])).tolist() == ["other 0", "other 1"]


def test_categories_of_a_tiny_or_wordless_catalog() -> None:
    assert derive_categories(np.array(["", ""]), n_categories=24)[0].tolist() == [0, 0]
    labels, how = derive_categories(np.array(["CANDLE", "BAG"]), n_categories=24)
    assert how["n_categories"] <= 2 and labels.size == 2


def test_missing_file_is_one_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_online_retail(tmp_path / "nope.parquet")
    assert isinstance(err.value, ConfigError)
    assert err.value.reason == f"no such data file: {tmp_path / 'nope.parquet'}" and err.value.field == "data"


def test_not_parquet_and_missing_column_are_config_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(DatasetError, match="cannot read .* as Parquet"):
        load_online_retail(junk)
    with pytest.raises(DatasetError, match="lacks column\\(s\\) CustomerID"):
        load_online_retail(_write(tmp_path / "nocust.parquet", drop="CustomerID"))
    cancelled = [r for r in ROWS if r[0].startswith("C")]
    with pytest.raises(DatasetError, match="no product sales left"):
        load_online_retail(_write(tmp_path / "cancelled.parquet", cancelled))
