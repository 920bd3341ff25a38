"""The optional UCI Online Retail loader, on a hand-made file with one row per cleaning rule."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from strata.model_export.datasets.online_retail import load_online_retail

ROWS = [
    # InvoiceNo, StockCode, Description, Quantity, InvoiceDate (UK local), UnitPrice, CustomerID
    ("536365", "85123A", "WHITE HEART ", 6, datetime(2010, 12, 1, 8, 26), 2.55, 17850),
    ("536365", "71053", "WHITE LANTERN", 6, datetime(2010, 12, 1, 8, 26), 3.39, 17850),
    ("536365", "71053", "WHITE LANTERN", 6, datetime(2010, 12, 1, 8, 26), 3.39, 17850),  # exact duplicate
    ("536366", "85123A", "CREAM HEART", 2, datetime(2011, 6, 1, 12, 0), 2.95, 13047),
    ("536367", "85123A", "WHITE HEART", 1, datetime(2011, 6, 2, 9, 30), 3.15, 13047),
    ("C536368", "71053", "WHITE LANTERN", -1, datetime(2011, 6, 2, 10, 0), 3.39, 13047),  # cancellation
    ("A536369", "71053", "Adjust bad debt", 1, datetime(2011, 6, 2, 10, 0), 11062.06, 13047),  # adjustment
    ("536370", "POST", "POSTAGE", 3, datetime(2011, 6, 2, 10, 0), 18.0, 12583),  # not a product
    ("536371", "22632", None, 0, datetime(2011, 6, 2, 10, 0), 1.0, 12583),  # zero quantity
    ("536372", "22632", "HAND WARMER", 1, datetime(2011, 6, 2, 10, 0), 0.0, 12583),  # zero price
    ("536373", "22633", "HAND WARMER UNION JACK", 4, datetime(2011, 6, 2, 10, 0), 1.85, None),  # no customer
    ("536374", "22633", None, 2, datetime(2011, 6, 3, 10, 0), 1.65, 12583),  # kept, no description
]


def _write(path: Path, ii_names: bool = False) -> Path:
    cols = list(zip(*ROWS, strict=True))
    names = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    if ii_names:
        names = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID"]
    arrays = [pa.array(cols[0]), pa.array(cols[1]), pa.array(cols[2], pa.string()), pa.array(cols[3], pa.int64()),
              pa.array(cols[4], pa.timestamp("us")), pa.array(cols[5], pa.float64()),
              pa.array(cols[6], pa.int64())]
    table = pa.table(dict(zip(names, arrays, strict=True)) | {"Country": pa.array(["United Kingdom"] * len(ROWS))})
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("ii_names", [False, True])
def test_cleaning_and_tables(tmp_path: Path, ii_names: bool) -> None:
    log = load_online_retail(_write(tmp_path / "retail.parquet", ii_names))
    assert log.item_id.tolist() == ["22633", "71053", "85123A"]
    assert log.title.tolist() == ["", "WHITE LANTERN", "WHITE HEART"]  # most frequent, stripped
    assert log.price.tolist() == [1.65, 3.39, 2.95]  # median unit price
    assert log.popularity.tolist() == [1, 1, 3]  # distinct invoices
    assert log.customer_id.tolist() == [12583, 13047, 17850]
    assert log.invoice_id.tolist() == ["536365", "536366", "536367", "536374"]
    assert log.item.size == 5 and log.quantity.tolist() == [6, 6, 2, 1, 2]
    # 2010-12-01 08:26 GMT and 2011-06-01 12:00 BST (= 11:00 UTC)
    assert log.ts_ms[0] == 1_291_191_960_000 and log.ts_ms[2] == 1_306_926_000_000
    vecs = log.item_vectors(seed=1)
    assert vecs.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
