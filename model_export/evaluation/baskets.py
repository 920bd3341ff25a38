"""The dataset interface of offline evaluation: a catalog and distinct (invoice, item) purchases.

Models train on ``Baskets`` and are asked for ``Queries`` (``split.py``); neither knows which file the
data came from, so every model (the baselines now, Strata's two-tower and ranker later) sees the same
cleaned purchases. A basket is an invoice; the grain is the distinct (invoice, item) pair, so a line
repeated on one invoice counts once, and quantities are ignored (wholesalers buy in the hundreds).
Every pair carries its invoice's time (the invoice's first line), so an invoice is atomic in time:
it is entirely before or entirely after any cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.model_export.datasets.online_retail import RetailLog


@dataclass(frozen=True, slots=True)
class Catalog:
    item_id: np.ndarray  # str stock code
    title: np.ndarray  # str description (item text)
    price: np.ndarray  # float64 median unit price
    category: np.ndarray  # int64 derived category per item

    @property
    def n_items(self) -> int:
        return int(self.item_id.size)


@dataclass(frozen=True, slots=True)
class Baskets:
    """Distinct (invoice, item) pairs sorted by (customer, time, invoice, item).

    The sort order is what makes a customer's history a contiguous slice ending just before a query.
    """

    customer: np.ndarray  # int64 customer index
    item: np.ndarray  # int64 catalog index
    invoice: np.ndarray  # int64 invoice index
    ts_ms: np.ndarray  # int64 UTC epoch ms of the invoice
    country: np.ndarray  # int64 country index of the invoice (context)
    catalog: Catalog
    n_customers: int

    def __len__(self) -> int:
        return int(self.item.size)

    def where(self, keep: np.ndarray) -> Baskets:
        """The pairs where ``keep`` is True, still sorted."""
        return Baskets(self.customer[keep], self.item[keep], self.invoice[keep], self.ts_ms[keep],
                       self.country[keep], self.catalog, self.n_customers)

    def before(self, t_ms: int) -> Baskets:
        return self.where(self.ts_ms < t_ms)

    def popularity(self) -> np.ndarray:
        """int64 per item: distinct invoices containing it (the pairs are distinct, so a bincount)."""
        return np.bincount(self.item, minlength=self.catalog.n_items).astype(np.int64)

    def n_invoices(self) -> int:
        return int(np.unique(self.invoice).size)


def make_baskets(customer: np.ndarray, item: np.ndarray, invoice: np.ndarray, ts_ms: np.ndarray,
                 country: np.ndarray, catalog: Catalog, n_customers: int) -> Baskets:
    """Baskets from invoice lines in any order: invoice time = its first line, pairs deduplicated, sorted."""
    invoice = np.asarray(invoice, dtype=np.int64)
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    first = np.full(int(invoice.max(initial=-1)) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, invoice, ts_ms)
    inv_ts = first[invoice]
    order = np.lexsort((item, invoice, inv_ts, customer))
    customer, item, invoice = np.asarray(customer)[order], np.asarray(item)[order], invoice[order]
    inv_ts, country = inv_ts[order], np.asarray(country)[order]
    distinct = np.r_[True, (invoice[1:] != invoice[:-1]) | (item[1:] != item[:-1])][:item.size]
    return Baskets(customer[distinct].astype(np.int64), item[distinct].astype(np.int64), invoice[distinct],
                   inv_ts[distinct], country[distinct].astype(np.int64), catalog, int(n_customers))


def baskets_from_retail(log: RetailLog) -> Baskets:
    catalog = Catalog(log.item_id, log.title, log.price, log.category)
    return make_baskets(log.user, log.item, log.session, log.ts_ms, log.country, catalog, log.customer_id.size)
