"""The temporal split: who trains, what each test invoice may see (only earlier pairs), bad cut dates."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.model_export.evaluation.baskets import Baskets, Catalog, make_baskets
from strata.model_export.evaluation.harness import EvaluationConfig, evaluate
from strata.model_export.evaluation.split import month_before, parse_cut, temporal_split
from strata.shared.errors import ConfigError

CUT = "2011-11-01"
CUT_MS = parse_cut(CUT)
DAY = 86_400_000
A, B, C, D = 0, 1, 2, 3


def baskets(rows: list[tuple[int, int, float, list[int]]], n_items: int = 6, n_customers: int = 4) -> Baskets:
    """rows: (customer, invoice, days from the cut, items on its lines)."""
    cust, inv, ts, item = [], [], [], []
    for customer, invoice, day, items in rows:
        for it in items:
            cust.append(customer)
            inv.append(invoice)
            ts.append(CUT_MS + int(day * DAY))
            item.append(it)
    catalog = Catalog(np.array([f"I{i}" for i in range(n_items)]), np.array(["x"] * n_items),
                      np.ones(n_items), np.arange(n_items) % 2)
    return make_baskets(np.array(cust), np.array(item), np.array(inv), np.array(ts), np.zeros(len(item), int),
                        catalog, n_customers)


LOG = [
    (A, 0, -10, [0, 1]), (A, 1, -3, [1, 2]), (A, 2, 1, [1, 3]), (A, 3, 2, [0, 0, 4]),  # 3: a repeated line
    (B, 4, 1, [2]), (B, 5, 5, [2, 3]),  # B: first seen after the cut
    (C, 6, -20, [5]),  # C: training only
    (D, 7, -1, [0]), (D, 8, 3, [1]), (D, 9, 3, [2]),  # 8 and 9: same minute
]


def _history(queries, row: int) -> dict[int, int]:
    counts = queries.take(slice(row, row + 1)).history_counts().toarray()[0]
    return {int(i): int(counts[i]) for i in np.flatnonzero(counts)}


def test_train_is_everything_before_the_cut() -> None:
    split = temporal_split(baskets(LOG), CUT_MS)
    assert sorted(split.train.invoice.tolist()) == [0, 0, 1, 1, 6, 7]
    assert (split.train.ts_ms < CUT_MS).all()


def test_one_query_per_test_invoice_with_its_distinct_items() -> None:
    q = temporal_split(baskets(LOG), CUT_MS).queries
    assert q.invoice.tolist() == [2, 3, 4, 5, 8, 9]
    assert q.known.tolist() == [True, True, False, False, True, True]
    assert [sorted(q.relevant[r].indices.tolist()) for r in range(len(q))] == [[1, 3], [0, 4], [2], [2, 3], [1],
                                                                                [2]]
    assert q.relevant.sum() == 9  # the repeated line on invoice 3 counts once


def test_history_holds_only_earlier_invoices_including_earlier_test_ones() -> None:
    q = temporal_split(baskets(LOG), CUT_MS).queries
    assert _history(q, 0) == {0: 1, 1: 2, 2: 1}  # invoices 0 and 1
    assert _history(q, 1) == {0: 1, 1: 3, 2: 1, 3: 1}  # ... and test invoice 2, not invoice 3 itself
    assert _history(q, 2) == {}  # B's first invoice: nothing yet
    assert _history(q, 3) == {2: 1}  # B's earlier test invoice
    assert _history(q, 4) == {0: 1} and _history(q, 5) == {0: 1}  # same minute: neither sees the other


def test_a_window_end_bounds_queries_and_history() -> None:
    split = temporal_split(baskets(LOG), CUT_MS, end_ms=CUT_MS + 2 * DAY)
    assert split.queries.invoice.tolist() == [2, 4]
    assert split.queries.log.ts_ms.max() < CUT_MS + 2 * DAY


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-30, 30), st.lists(st.integers(0, 7), min_size=1,
                                                                            max_size=4)), min_size=1, max_size=40))
def test_no_leakage_and_nothing_missing(rows: list[tuple[int, int, list[int]]]) -> None:
    log = baskets([(c, i, day / 2, items) for i, (c, day, items) in enumerate(rows)], n_items=8, n_customers=5)
    q = temporal_split(log, CUT_MS).queries
    for r in range(len(q)):
        past = slice(int(q.start[r]), int(q.stop[r]))
        assert (q.log.customer[past] == q.customer[r]).all()
        assert (q.log.ts_ms[past] < q.at_ms[r]).all()
        assert q.invoice[r] not in q.log.invoice[past]
        expected = ((log.customer == q.customer[r]) & (log.ts_ms < q.at_ms[r])).sum()
        assert q.stop[r] - q.start[r] == expected


def test_cut_dates_are_uk_local_time() -> None:
    assert parse_cut("2011-11-01") == datetime(2011, 11, 1, tzinfo=UTC).timestamp() * 1000  # GMT in November
    assert parse_cut("2011-07-01") == datetime(2011, 6, 30, 23, tzinfo=UTC).timestamp() * 1000  # BST
    assert parse_cut("2011-11-01T12:30") == CUT_MS + 12.5 * 3_600_000
    assert month_before(CUT_MS) == parse_cut("2011-10-01")


@pytest.mark.parametrize("bad", ["2011-13-01", "yesterday", "", "01/11/2011"])
def test_bad_cut_date_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_cut(bad)
    assert err.value.field == "cut" and "ISO date" in err.value.reason


@pytest.mark.parametrize(("cut", "says"), [("2012-06-01", "no test invoices after it"),
                                           ("2010-01-01", "no training invoices before it")])
def test_a_cut_outside_the_data_is_a_config_error(cut: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        evaluate(baskets(LOG), EvaluationConfig(cut=cut, models=("popularity",)))
    assert says in err.value.reason and err.value.field == "cut"
