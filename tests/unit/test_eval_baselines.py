"""Each baseline's behaviour on tiny hand-made logs, and the model registry the harness uses."""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.evaluation.als import ALSParams, ImplicitALS
from strata.model_export.evaluation.baskets import Baskets, Catalog, make_baskets
from strata.model_export.evaluation.item_knn import ItemKNN
from strata.model_export.evaluation.models import BASELINES, RECOMMENDERS, ModelOptions, make_recommender
from strata.model_export.evaluation.popularity import Popularity, RecentPopularity
from strata.model_export.evaluation.protocol import Recommender, Tunable
from strata.model_export.evaluation.repeat import RepeatPurchases
from strata.model_export.evaluation.split import Queries, parse_cut, temporal_split
from strata.shared.errors import ConfigError

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
                      np.ones(n_items), np.arange(n_items) % 3)
    return make_baskets(np.array(cust), np.array(item), np.array(inv), np.array(ts), np.zeros(len(item), int),
                        catalog, max(r[0] for r in rows) + 1)


def answer(model: Recommender, rows: list[tuple[int, float, list[int]]], k: int = 5,
           n_items: int = 8) -> tuple[np.ndarray, Queries]:
    split = temporal_split(baskets(rows, n_items), CUT_MS)
    model.fit(split.train)
    return model.recommend(split.queries, k), split.queries


# item 0 sold in 4 invoices long ago; item 1 in 2 recent ones; item 2 in 1 recent one
SEASONAL = [(0, -100, [0]), (1, -99, [0]), (2, -98, [0]), (3, -97, [0]), (0, -5, [1]), (1, -4, [1]),
            (2, -10, [2]), (0, 1, [5])]


def test_popularity_is_the_same_list_for_everyone_ties_by_catalog_order() -> None:
    recs, _ = answer(Popularity(), SEASONAL + [(3, 2, [6])])
    assert recs.tolist() == [[0, 1, 2, 3, 4]] * 2


def test_recent_ignores_old_sales_except_to_break_ties() -> None:
    recs, _ = answer(RecentPopularity(days=30), SEASONAL)
    assert recs[0].tolist() == [1, 2, 0, 3, 4]  # item 0's four sales are older than 30 days


def test_repeat_ranks_most_frequent_then_most_recent_then_popular() -> None:
    rows = [(9, -50, [7]), (9, -49, [7]), (9, -48, [7]), (9, -47, [6])]  # popularity: 7, then 6
    rows += [(0, -30, [3]), (0, -20, [3, 4]), (0, -10, [5]), (0, -5, [3]), (0, -2, [4])]
    rows += [(0, 1, [2]), (0, 3, [0])]  # two test invoices; the second also sees the first
    recs, _ = answer(RepeatPurchases(), rows)
    # item 3 x3; item 4 x2; item 5 x1 (older); then popularity: 7, 3 (taken), 6, 4 (taken), ...
    assert recs[0].tolist() == [3, 4, 5, 7, 6]
    assert recs[1].tolist() == [3, 4, 2, 5, 7]  # item 2 (1 invoice, day 1) is more recent than item 5


def test_repeat_with_no_history_is_popularity() -> None:
    rows = SEASONAL + [(7, 1, [3])]  # customer 7 is new
    repeat, queries = answer(RepeatPurchases(), rows)
    popular, _ = answer(Popularity(), rows)
    new = np.flatnonzero(queries.customer == 7)
    assert repeat[new].tolist() == popular[new].tolist()


# two tastes: items 0-2 bought together, items 3-5 bought together; item 6 is bought alone, by most
TASTES = ([(c, -60 + c, [0, 1, 2]) for c in range(0, 6)] + [(c, -60 + c, [3, 4, 5]) for c in range(6, 12)]
          + [(c, -30 + c, [6]) for c in range(0, 12)] + [(12, -2, [0]), (12, 1, [1]), (13, 1, [4])])


def test_item_knn_recommends_what_was_bought_with_the_history() -> None:
    recs, queries = answer(ItemKNN(neighbours=3), TASTES, n_items=7)
    row = int(np.flatnonzero(queries.customer == 12)[0])
    assert recs[row, 0] == 0 and set(recs[row, 1:3].tolist()) == {1, 2}  # itself, then its basket mates
    new = int(np.flatnonzero(queries.customer == 13)[0])
    assert recs[new, 0] == 6  # no history: popularity


def test_als_fold_in_follows_the_history_and_is_seeded() -> None:
    params = ALSParams(factors=4, regularization=0.1, alpha=10.0, weighting="log", iterations=15)
    first, queries = answer(ImplicitALS(params, seed=3, num_threads=1), TASTES, n_items=7)
    again, _ = answer(ImplicitALS(params, seed=3, num_threads=1), TASTES, n_items=7)
    assert first.tolist() == again.tolist()
    row = int(np.flatnonzero(queries.customer == 12)[0])
    assert set(first[row, :3].tolist()) == {0, 1, 2}  # customer 12 bought item 0 before: its taste
    new = int(np.flatnonzero(queries.customer == 13)[0])
    assert first[new, 0] == 6  # empty history -> zero factors -> popularity


def test_als_tuning_picks_from_the_grid_and_records_every_trial() -> None:
    grid = {"factors": (2, 4), "regularization": (0.1, 1.0), "iterations": (5,)}
    model = ImplicitALS(ALSParams(factors=2, iterations=5), num_threads=1, grid=grid)
    full = baskets(TASTES, n_items=7)
    validation = temporal_split(full.before(CUT_MS), CUT_MS - 3 * DAY, CUT_MS)
    tuned = model.tune(validation.train, validation.queries)
    assert tuned["params"]["factors"] in (2, 4) and tuned["params"]["regularization"] in (0.1, 1.0)
    assert model.params.factors == tuned["params"]["factors"]
    assert len(tuned["trials"]) >= 3 and 0.0 <= tuned["validation_ndcg@10"] <= 1.0
    assert tuned["validation_ndcg@10"] == max(t["score"] for t in tuned["trials"])


@pytest.mark.parametrize("name", BASELINES)
def test_every_model_returns_k_distinct_items_per_query(name: str) -> None:
    model = make_recommender(name, ModelOptions(num_threads=1))
    assert isinstance(model, Recommender) and model.name == name
    recs, queries = answer(model, TASTES, k=5, n_items=7)
    assert recs.shape == (len(queries), 5) and recs.dtype == np.int64
    assert all(len(set(row)) == 5 for row in recs.tolist())


def test_registry_names_the_valid_models() -> None:
    assert set(BASELINES) <= set(RECOMMENDERS)
    assert isinstance(make_recommender("implicit_als", ModelOptions()), Tunable)
    with pytest.raises(ConfigError) as err:
        make_recommender("nope", ModelOptions())
    assert "unknown model 'nope'" in err.value.reason and "repeat" in err.value.reason
