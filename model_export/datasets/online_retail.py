"""Loader for the UCI Online Retail invoice lines (optional; the exporter never requires it).

The data is purchases only: no impressions, so no negatives for a click model, and no categories for
the shared feature builder. What it does give is real customer x item x time interactions, which is
what item embeddings and popularity need; ``item_vectors`` runs the same SVD as the synthetic path.
Cleaning keeps product sales only. The rules run in the order of ``CLEANING_RULES`` and the report counts
what each one removes from the rows the earlier ones left, so the counts add up and never double-count.
InvoiceDate is UK local time; it is converted to UTC epoch ms. Items get derived categories
(``item_categories``) because the data has none.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

from strata.model_export.datasets.item_categories import N_CATEGORIES, category_names, derive_categories
from strata.model_export.embeddings import interaction_matrix, learn_item_vectors
from strata.shared.contracts.api import EVENT_TYPES
from strata.shared.errors import ConfigError

logger = logging.getLogger(__name__)

# The team folder next to the repository (``../shared`` from the repo root), as in CI.
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail" / "online_retail.parquet"
# Online Retail II names its columns differently; map them onto the original ones.
_RENAME_II = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
            "Country")
PRODUCT_CODE = r"^[0-9]{5}[A-Za-z]{0,2}$"
# (rule, what it removes), applied in this order; exact duplicates are dropped last.
CLEANING_RULES = (
    ("cancellation", "InvoiceNo starts with C"),
    ("adjustment", "InvoiceNo starts with A (bad-debt adjustments)"),
    ("no_customer", "CustomerID is null"),
    ("non_product_code", f"StockCode does not match {PRODUCT_CODE} (POST, M, BANK CHARGES, DOT, ...)"),
    ("non_positive_quantity", "Quantity <= 0"),
    ("non_positive_price", "UnitPrice <= 0"),
    ("exact_duplicate", "a row identical in every column to an earlier one"),
)


class DatasetError(ConfigError):
    """The data file is missing, unreadable or lacks a column: the caller pointed at the wrong thing."""

    code = "bad_dataset"


@dataclass(slots=True)
class RetailLog:
    item_id: np.ndarray  # str stock code, sorted
    title: np.ndarray  # str most frequent description ("" if none)
    price: np.ndarray  # float64 median unit price, GBP
    popularity: np.ndarray  # int64 distinct invoices per item
    customer_id: np.ndarray  # int64, sorted
    invoice_id: np.ndarray  # str, sorted
    user: np.ndarray  # per line: index into customer_id
    item: np.ndarray  # per line: index into item_id
    session: np.ndarray  # per line: index into invoice_id (an invoice is one basket)
    ts_ms: np.ndarray  # per line: UTC epoch ms
    quantity: np.ndarray  # per line
    sha256: str  # of the source file
    category: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per item, derived
    country_name: np.ndarray = field(default_factory=lambda: np.zeros(0, str))  # sorted
    country: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per line: into country_name
    report: dict[str, Any] = field(default_factory=dict)  # cleaning report, JSON-ready and deterministic

    def interactions(self) -> sparse.csr_matrix:
        purchase = np.full(self.item.size, EVENT_TYPES.index("purchase"))
        return interaction_matrix(self.user, self.item, purchase, self.customer_id.size, self.item_id.size)

    def item_vectors(self, seed: int = 7) -> np.ndarray:
        return learn_item_vectors(self.interactions(), seed=seed)


def _rule_masks(table: pa.Table) -> dict[str, pa.ChunkedArray]:
    """Per rule, True where the row is REMOVED (nulls count as removed: they are not product sales)."""
    invoice = table["InvoiceNo"]
    return {
        "cancellation": pc.starts_with(invoice, "C"),
        "adjustment": pc.starts_with(invoice, "A"),
        "no_customer": pc.is_null(table["CustomerID"]),
        "non_product_code": pc.invert(pc.match_substring_regex(table["StockCode"], PRODUCT_CODE)),
        "non_positive_quantity": pc.invert(pc.greater(table["Quantity"], 0)),
        "non_positive_price": pc.invert(pc.greater(table["UnitPrice"], 0.0)),
    }


def _clean(table: pa.Table) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The product-sale rows and, per rule in order, how many rows it removed and how many were left."""
    table = table.rename_columns([_RENAME_II.get(c, c) for c in table.column_names])
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"the file lacks column(s) {', '.join(missing)}", field="data")
    table = table.select(list(_COLUMNS))
    steps = []
    for rule, why in CLEANING_RULES:
        before = table.num_rows
        if rule == "exact_duplicate":
            table = table.group_by(list(_COLUMNS), use_threads=False).aggregate([])
        else:
            table = table.filter(pc.invert(pc.fill_null(_rule_masks(table)[rule], True)))
        steps.append({"rule": rule, "removes": why, "rows_removed": before - table.num_rows,
                      "rows_left": table.num_rows})
    return table, steps


def _read(path: Path) -> tuple[pa.Table, str]:
    if not path.is_file():
        raise DatasetError(f"no such data file: {path}", field="data")
    try:
        data = path.read_bytes()
        return pq.read_table(pa.BufferReader(data)), hashlib.sha256(data).hexdigest()
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {path} as Parquet: {exc}", field="data") from exc


def _per_item_title(item: np.ndarray, desc: np.ndarray, n_items: int) -> np.ndarray:
    """Most frequent non-empty description per item; ties go to the alphabetically first."""
    names, desc_idx = np.unique(desc, return_inverse=True)  # sorted, so a smaller index is alphabetically first
    has = desc != ""
    pair, counts = np.unique(item[has] * names.size + desc_idx[has], return_counts=True)
    item_of, name_of = pair // names.size, pair % names.size
    order = np.lexsort((name_of, -counts, item_of))
    first = order[np.r_[True, item_of[order][1:] != item_of[order][:-1]]]
    title = np.full(n_items, "", dtype=object)
    title[item_of[first]] = names[name_of[first]]
    return title.astype(str)


def load_online_retail(path: Path | str = DEFAULT_PATH, n_categories: int = N_CATEGORIES,
                       seed: int = 7) -> RetailLog:
    """Clean the file and index it; raises DatasetError (one clear line) for a missing or unusable file."""
    path = Path(path)
    raw, sha = _read(path)
    rows_in = raw.num_rows
    table, steps = _clean(raw)
    if table.num_rows == 0:
        raise DatasetError(f"no product sales left in {path} after cleaning", field="data")
    ts = pc.assume_timezone(table["InvoiceDate"], timezone="Europe/London", ambiguous="earliest",
                            nonexistent="earliest")
    ts_ms = pc.cast(pc.cast(ts, pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy()
    item_id, item = np.unique(table["StockCode"].to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
    customer_id, user = np.unique(table["CustomerID"].to_numpy(), return_inverse=True)
    invoice_id, session = np.unique(table["InvoiceNo"].to_numpy(zero_copy_only=False).astype(str),
                                    return_inverse=True)
    country_name, country = np.unique(pc.fill_null(table["Country"], "").to_numpy(zero_copy_only=False).astype(str),
                                      return_inverse=True)
    order = np.lexsort((ts_ms, session))  # per-basket order, then time
    item, user, session, ts_ms, country = item[order], user[order], session[order], ts_ms[order], country[order]
    quantity = table["Quantity"].to_numpy()[order]
    unit_price = table["UnitPrice"].to_numpy()[order]
    desc = np.char.strip(pc.fill_null(table["Description"], "").to_numpy(zero_copy_only=False).astype(str))[order]
    n_items = item_id.size
    by_price = np.lexsort((unit_price, item))
    counts = np.bincount(item, minlength=n_items)
    starts = np.cumsum(counts) - counts
    sorted_price = unit_price[by_price]
    price = (sorted_price[starts + (counts - 1) // 2] + sorted_price[starts + counts // 2]) / 2.0
    basket = np.unique(item * invoice_id.size + session)  # (item, invoice) pairs
    popularity = np.bincount(basket // invoice_id.size, minlength=n_items).astype(np.int64)
    title = _per_item_title(item, desc, n_items)
    category, how = derive_categories(title, n_categories=n_categories, seed=seed)
    how["names"] = category_names(title, category).tolist()
    report = {"source": path.name, "sha256": sha, "rows_in": rows_in, "rules": steps,
              "rows_out": int(table.num_rows), "items": int(n_items), "customers": int(customer_id.size),
              "invoices": int(invoice_id.size), "countries": int(country_name.size), "categories": how}
    log = RetailLog(item_id, title, price, popularity, customer_id, invoice_id, user.astype(np.int64),
                    item.astype(np.int64), session.astype(np.int64), ts_ms, quantity, sha, category=category,
                    country_name=country_name, country=country.astype(np.int64), report=report)
    logger.info("online retail: %d lines, %d items, %d customers, %d invoices", item.size, n_items,
                customer_id.size, invoice_id.size)
    return log
