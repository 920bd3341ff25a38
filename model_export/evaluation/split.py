"""Temporal split: train before a cut, then one query per later invoice, answered as a server would.

A query's history is every pair of that customer strictly before the invoice's time, earlier test
invoices included: the server has seen them by then. Because ``Baskets`` are sorted by (customer, time),
that history is the slice ``log[start:stop]`` and cannot contain the invoice itself or anything later
(two invoices of one customer in the same minute do not see each other). Relevance is the invoice's
distinct items. Customers with any pair before the cut are ``returning``; the rest are ``unseen``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
from scipy import sparse

from strata.model_export.evaluation.baskets import Baskets
from strata.shared.errors import ConfigError

DATA_TIMEZONE = ZoneInfo("Europe/London")  # InvoiceDate is UK local time
SEGMENTS = ("returning", "unseen")


@dataclass(frozen=True, slots=True)
class Queries:
    """One row per evaluated invoice; ``log`` holds every pair up to the end of the window."""

    log: Baskets
    invoice: np.ndarray  # int64
    customer: np.ndarray  # int64
    at_ms: np.ndarray  # int64 invoice time
    country: np.ndarray  # int64 invoice country (context)
    start: np.ndarray  # int64: history is log[start:stop]
    stop: np.ndarray
    known: np.ndarray  # bool: customer seen in training (returning)
    relevant: sparse.csr_matrix  # [n, n_items] 1 for each distinct item of the invoice

    def __len__(self) -> int:
        return int(self.invoice.size)

    def take(self, rows: np.ndarray | slice) -> Queries:
        return Queries(self.log, self.invoice[rows], self.customer[rows], self.at_ms[rows], self.country[rows],
                       self.start[rows], self.stop[rows], self.known[rows], self.relevant[rows])

    def segment(self, name: str) -> np.ndarray:
        """bool mask of the queries in ``returning`` or ``unseen``."""
        return self.known if name == "returning" else ~self.known

    def history_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(query row, position in ``log``) for every history pair, rows ascending, time order within."""
        lengths = self.stop - self.start
        rows = np.repeat(np.arange(len(self)), lengths)
        offsets = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(self.start, lengths)
        return rows, positions

    def history_counts(self) -> sparse.csr_matrix:
        """float64 [n, n_items]: how many earlier invoices of the customer contained each item."""
        rows, pos = self.history_positions()
        shape = (len(self), self.log.catalog.n_items)
        counts = sparse.csr_matrix((np.ones(rows.size), (rows, self.log.item[pos])), shape=shape)
        counts.sum_duplicates()
        return counts


@dataclass(frozen=True, slots=True)
class Split:
    train: Baskets
    queries: Queries
    cut_ms: int
    end_ms: int | None


def parse_cut(text: str) -> int:
    """UTC epoch ms of a cut given as an ISO date (midnight) or date-time in UK local time."""
    try:
        moment = datetime.fromisoformat(text) if "T" in text or " " in text.strip() else None
        if moment is None:
            day = date.fromisoformat(text.strip())
            moment = datetime(day.year, day.month, day.day)
    except (TypeError, ValueError):
        raise ConfigError(f"must be an ISO date like 2011-11-01, got {text!r}", field="cut") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=DATA_TIMEZONE)
    return int(moment.timestamp() * 1000)


def month_before(cut_ms: int) -> int:
    """The same local wall-clock time one calendar month earlier (the validation window's start)."""
    local = datetime.fromtimestamp(cut_ms / 1000, DATA_TIMEZONE)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    day = min(local.day, 28)  # every month has a 28th
    return int(local.replace(year=year, month=month, day=day).timestamp() * 1000)


def temporal_split(baskets: Baskets, cut_ms: int, end_ms: int | None = None) -> Split:
    """Train on pairs before ``cut_ms``; one query per invoice in [cut_ms, end_ms)."""
    log = baskets if end_ms is None else baskets.before(end_ms)
    train = log.before(cut_ms)
    window = np.flatnonzero(log.ts_ms >= cut_ms)
    if window.size == 0 or len(train) == 0:
        return Split(train, _no_queries(log), cut_ms, end_ms)
    opens = np.r_[True, log.invoice[window][1:] != log.invoice[window][:-1]]  # an invoice's pairs are contiguous
    first = window[opens]
    customer, at_ms = log.customer[first], log.ts_ms[first]
    key = _time_key(log)
    start = np.searchsorted(log.customer, customer, side="left")
    stop = np.searchsorted(key(log.customer, log.ts_ms), key(customer, at_ms), side="left")
    query_of_pair = np.cumsum(opens) - 1
    relevant = sparse.csr_matrix((np.ones(window.size), (query_of_pair, log.item[window])),
                                 shape=(first.size, log.catalog.n_items))
    known = np.isin(customer, np.unique(train.customer))
    queries = Queries(log, log.invoice[first], customer, at_ms, log.country[first], start.astype(np.int64),
                      stop.astype(np.int64), known, relevant)
    return Split(train, queries, cut_ms, end_ms)


def _time_key(log: Baskets) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A sortable int64 of (customer, time): the log is sorted by it, so searchsorted finds 'before'."""
    t0 = int(log.ts_ms.min()) if len(log) else 0
    span = (int(log.ts_ms.max()) - t0 + 2) if len(log) else 2
    if log.n_customers * span >= 2**62:
        raise ConfigError(f"time span {span} ms x {log.n_customers} customers overflows the query key",
                          field="data")
    return lambda customer, ts: customer.astype(np.int64) * span + (ts.astype(np.int64) - t0 + 1)


def _no_queries(log: Baskets) -> Queries:
    empty = np.zeros(0, dtype=np.int64)
    return Queries(log, empty, empty, empty, empty, empty, empty, np.zeros(0, dtype=bool),
                   sparse.csr_matrix((0, log.catalog.n_items)))
