"""The published next-basket baselines (TIFU-KNN, UP-CF@r) on tiny logs with hand-computed scores."""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.evaluation.baskets import Baskets, Catalog, make_baskets
from strata.model_export.evaluation.split import parse_cut, temporal_split
from strata.model_export.evaluation.tifu_knn import TIFUKNN, TIFUParams, tifu_vectors
from strata.model_export.evaluation.upcf import UPCF, UPCFParams, asymmetric_cosine, item_sets
from strata.shared.models.next_basket import basket_ordinals

CUT_MS = parse_cut("2011-11-01")
DAY = 86_400_000


def baskets(rows: list[tuple[int, float, list[int]]], n_items: int = 8) -> Baskets:
    """rows: (customer, days from the cut, items); each row is its own invoice."""
    cust, inv, ts, item = [], [], [], []
    for invoice, (customer, day, items) in enumerate(rows):
        cust += [customer] * len(items)
        inv += [invoice] * len(items)
        ts += [CUT_MS + int(day * DAY)] * len(items)
        item += items
    catalog = Catalog(np.array([f"I{i}" for i in range(n_items)]), np.array(["x"] * n_items),
                      np.ones(n_items), np.zeros(n_items, np.int64))
    return make_baskets(np.array(cust), np.array(item), np.array(inv), np.array(ts), np.zeros(len(item), int),
                        catalog, max(r[0] for r in rows) + 1)


def test_basket_ordinals_count_invoices_per_row() -> None:
    b = baskets([(0, -3, [1, 2]), (0, -2, [1]), (1, -5, [4]), (0, -1, [3, 5, 6])])
    ordinal, count = basket_ordinals(b.customer, b.invoice)
    assert ordinal.tolist() == [0, 0, 1, 2, 2, 2, 0]
    assert count.tolist() == [3, 3, 3, 3, 3, 3, 1]


THREE = [(0, -30, [0]), (0, -20, [0, 1]), (0, -10, [2])]


@pytest.mark.parametrize(("within", "expected"), [
    # groups of 3 baskets, m = 2: [b1], [b2, b3]; group 1 = (0.5 b2 + b3) / 2, user = (0.5 g0 + g1) / 2
    ("group", {0: 0.375, 1: 0.125, 2: 0.25}),
    # the authors' code: rb counts to the end of the history, so b1 weighs 0.5 ** 2 inside its group
    ("history", {0: 0.1875, 1: 0.125, 2: 0.25}),
])
def test_tifu_vector_is_the_papers_hierarchical_decay(within: str, expected: dict[int, float]) -> None:
    b = baskets(THREE, n_items=4)
    vec = tifu_vectors(b.customer, b.item, b.invoice, 1, 4, TIFUParams(m=2, rb=0.5, rg=0.5, within=within))
    assert vec.toarray()[0].tolist() == pytest.approx([expected.get(i, 0.0) for i in range(4)])


def test_tifu_with_fewer_baskets_than_groups_weighs_each_basket_as_a_group() -> None:
    b = baskets(THREE, n_items=4)
    vec = tifu_vectors(b.customer, b.item, b.invoice, 1, 4, TIFUParams(m=5, rb=0.1, rg=0.5))
    # three groups of one basket: (0.25 b1 + 0.5 b2 + b3) / 3
    assert vec.toarray()[0].tolist() == pytest.approx([0.25, 0.5 / 3, 1 / 3, 0.0])


# customer 1's vector (m=1, no decay) is {4: 1, 5: 0.5}; customer 2 bought item 4 once before the cut
NEIGHBOURS = [(0, -50, [3]), (1, -40, [4, 5]), (1, -30, [4]), (2, -20, [4]), (2, 1, [5])]


def test_tifu_blends_the_own_vector_with_the_nearest_other_customer() -> None:
    model = TIFUKNN(TIFUParams(m=1, rb=1.0, rg=1.0, k=1, alpha=0.5))
    split = temporal_split(baskets(NEIGHBOURS), CUT_MS)
    model.fit(split.train)
    scores = model.scores(split.queries)
    # own {4: 1}; its own training row (distance 0) is left out, so customer 1 (0.25) beats customer 0 (2)
    assert scores[0].tolist() == pytest.approx([0, 0, 0, 0, 1.0, 0.25, 0, 0])
    assert model.recommend(split.queries, 5)[0].tolist() == [4, 5, 3, 0, 1]  # then popularity


def test_tifu_empty_history_is_popularity() -> None:
    model = TIFUKNN(TIFUParams(m=1, k=1))
    split = temporal_split(baskets(NEIGHBOURS + [(3, 2, [0])]), CUT_MS)
    model.fit(split.train)
    new = int(np.flatnonzero(split.queries.customer == 3)[0])
    assert not model.scores(split.queries)[new].any()
    assert model.recommend(split.queries, 3)[new].tolist() == [4, 3, 5]


def test_asymmetric_cosine_by_hand() -> None:
    a = item_sets(np.array([0, 0]), np.array([1, 2]), 1, 4)  # {1, 2}
    b = item_sets(np.array([0, 1, 1, 1]), np.array([1, 1, 2, 3]), 2, 4)  # {1}, {1, 2, 3}
    # |A & B| / (|A| ** 0.25 * |B| ** 0.75)
    expected = [1 / (2 ** 0.25 * 1), 2 / (2 ** 0.25 * 3 ** 0.75)]
    assert asymmetric_cosine(a, b, 0.25)[0].tolist() == pytest.approx(expected)
    assert asymmetric_cosine(item_sets(np.zeros(0, int), np.zeros(0, int), 1, 4), b, 0.5).tolist() == [[0.0, 0.0]]


# customer 0 bought {1, 2} then {1}; customer 1 bought item 3 twice; customer 2 bought item 1 once
UP = [(0, -50, [1, 2]), (0, -40, [1]), (1, -30, [3]), (1, -25, [3]), (2, -10, [1]), (2, 1, [2])]


@pytest.mark.parametrize(("r", "expected", "top"), [
    # r = 1: customer 0's popularity is {1: 1}; sim(2, 0) = 1 / (1 ** 0.5 * 2 ** 0.5)
    (1, {1: 1 + 2 ** -0.5}, [1, 3, 2]),
    # every basket: customer 0's popularity is {1: 1, 2: 0.5}
    (0, {1: 1 + 2 ** -0.5, 2: 0.5 * 2 ** -0.5}, [1, 2, 3]),
])
def test_upcf_own_recent_popularity_plus_similar_customers(r: int, expected: dict[int, float],
                                                            top: list[int]) -> None:
    model = UPCF(UPCFParams(r=r, alpha=0.5, q=1.0))
    split = temporal_split(baskets(UP, n_items=5), CUT_MS)
    model.fit(split.train)
    assert model.scores(split.queries)[0].tolist() == pytest.approx([expected.get(i, 0.0) for i in range(5)])
    assert model.recommend(split.queries, 3)[0].tolist() == top


def test_upcf_locality_shrinks_the_neighbours() -> None:
    model = UPCF(UPCFParams(r=0, alpha=0.5, q=4.0))
    split = temporal_split(baskets(UP, n_items=5), CUT_MS)
    model.fit(split.train)
    assert model.scores(split.queries)[0, 2] == pytest.approx(0.5 * 0.25)  # (2 ** -0.5) ** 4 = 0.25


@pytest.mark.parametrize("model", [TIFUKNN(grid={"k": (1, 300), "alpha": (0.7, 0.2)}),
                                   UPCF(grid={"r": (10, 1), "q": (5.0, 1.0)})])
def test_tuning_picks_from_the_grid_and_records_every_trial(model: TIFUKNN | UPCF) -> None:
    full = baskets(UP + NEIGHBOURS[:3] + [(2, -3, [1, 2])], n_items=8)
    validation = temporal_split(full.before(CUT_MS), CUT_MS - 5 * DAY, CUT_MS)
    tuned = model.tune(validation.train, validation.queries)
    for name, values in model.grid.items():
        assert tuned["params"][name] in values and getattr(model.params, name) == tuned["params"][name]
    assert tuned["validation_ndcg@10"] == max(t["score"] for t in tuned["trials"])
    assert tuned["grid"] == {k: list(v) for k, v in model.grid.items()} and len(tuned["trials"]) >= 3
