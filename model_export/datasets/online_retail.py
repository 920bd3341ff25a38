"""Loader for the UCI Online Retail invoice lines (optional; the exporter never requires it).

The data is purchases only: no impressions, so no negatives for a click model, and no categories for
the shared feature builder. What it does give is real customer x item x time interactions, which is
what item embeddings and popularity need; ``item_vectors`` runs the same SVD as the synthetic path.
Cleaning keeps product sales only: cancellations (``C...``) and adjustments (``A...``), non-positive
quantities or prices, lines without a customer, non-product stock codes (POST, M, BANK CHARGES ...)
and exact duplicate rows are dropped. InvoiceDate is UK local time; it is converted to UTC epoch ms.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

from model_export.embeddings import interaction_matrix, learn_item_vectors
from shared.contracts import EVENT_TYPES

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path("/work/shared/data/online_retail/online_retail.parquet")
# Online Retail II names its columns differently; map them onto the original ones.
_RENAME_II = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
            "Country")
PRODUCT_CODE = r"^[0-9]{5}[A-Za-z]{0,2}$"


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

    def interactions(self) -> sparse.csr_matrix:
        purchase = np.full(self.item.size, EVENT_TYPES.index("purchase"))
        return interaction_matrix(self.user, self.item, purchase, self.customer_id.size, self.item_id.size)

    def item_vectors(self, seed: int = 7) -> np.ndarray:
        return learn_item_vectors(self.interactions(), seed=seed)


def _clean(table: pa.Table) -> pa.Table:
    table = table.rename_columns([_RENAME_II.get(c, c) for c in table.column_names]).select(list(_COLUMNS))
    invoice = table["InvoiceNo"]
    keep = pc.and_(pc.invert(pc.starts_with(invoice, "C")), pc.invert(pc.starts_with(invoice, "A")))
    keep = pc.and_(keep, pc.greater(table["Quantity"], 0))
    keep = pc.and_(keep, pc.greater(table["UnitPrice"], 0.0))
    keep = pc.and_(keep, pc.is_valid(table["CustomerID"]))
    keep = pc.and_(keep, pc.match_substring_regex(table["StockCode"], PRODUCT_CODE))
    table = table.filter(pc.fill_null(keep, False))
    return table.group_by(list(_COLUMNS), use_threads=False).aggregate([])  # drop exact duplicates


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


def load_online_retail(path: Path | str = DEFAULT_PATH) -> RetailLog:
    path = Path(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    table = _clean(pq.read_table(path))
    ts = pc.assume_timezone(table["InvoiceDate"], timezone="Europe/London", ambiguous="earliest",
                            nonexistent="earliest")
    ts_ms = pc.cast(pc.cast(ts, pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy()
    item_id, item = np.unique(table["StockCode"].to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
    customer_id, user = np.unique(table["CustomerID"].to_numpy(), return_inverse=True)
    invoice_id, session = np.unique(table["InvoiceNo"].to_numpy(zero_copy_only=False).astype(str),
                                    return_inverse=True)
    order = np.lexsort((ts_ms, session))  # per-basket order, then time
    item, user, session, ts_ms = item[order], user[order], session[order], ts_ms[order]
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
    log = RetailLog(item_id, _per_item_title(item, desc, n_items), price, popularity, customer_id, invoice_id,
                    user.astype(np.int64), item.astype(np.int64), session.astype(np.int64), ts_ms,
                    quantity, sha)
    logger.info("online retail: %d lines, %d items, %d customers, %d invoices", item.size, n_items,
                customer_id.size, invoice_id.size)
    return log
