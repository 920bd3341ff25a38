"""The shared ranker feature code on hand-made histories: exact values per feature, candidates, tower input."""

from __future__ import annotations

import numpy as np
import pytest

from strata.shared.models.ranker_features import (
    FEATURE_NAMES,
    N_FEATURES,
    Histories,
    ItemStats,
    candidates,
    covisitation,
    ranker_rows,
    summarize,
    tower_input,
)
from strata.shared.models.ranker_neighbours import CustomerVectors, nearest_customers, neighbour_values

F = {name: i for i, name in enumerate(FEATURE_NAMES)}


def stats(n: int = 6) -> ItemStats:
    covis_items = np.full((n, 2), -1, dtype=np.int64)
    covis_weights = np.zeros((n, 2), dtype=np.float32)
    covis_items[0] = [3, 4]
    covis_weights[0] = [0.5, 0.25]
    covis_items[1] = [3, -1]
    covis_weights[1] = [1.0, 0.0]
    return ItemStats(popularity=np.array([10, 9, 8, 7, 6, 5], np.float32)[:n],
                     recent_popularity=np.array([0, 5, 0, 0, 1, 0], np.float32)[:n],
                     price=np.array([1, 2, 4, 8, 1, 1], np.float32)[:n],
                     category=np.array([0, 0, 1, 1, 2, 2], np.int64)[:n],
                     repeat_rate=np.array([0.5, 0, 0, 0, 0, 0.25], np.float32)[:n],
                     covis_items=covis_items, covis_weights=covis_weights)


# query 0: item 0 in invoices 1 (20 days ago) and 2 (5 days ago), item 1 in invoice 2; query 1: no history
HIST = Histories(ptr=np.array([0, 3, 3]), item=np.array([0, 0, 1]), invoice=np.array([1, 2, 2]),
                 age_days=np.array([20.0, 5.0, 5.0]))


def test_summary_counts_invoices_recency_rank_and_category_share() -> None:
    s = summarize(HIST, stats())
    assert s.key.tolist() == [0, 1]
    assert s.invoices.tolist() == [2.0, 1.0] and s.age_days.tolist() == [5.0, 5.0] and s.rank.tolist() == [0, 1]
    assert s.baskets.tolist() == [2.0, 0.0] and s.distinct.tolist() == [2.0, 0.0]
    assert s.last_age[0] == 5.0 and np.isnan(s.last_age[1])
    assert s.category_share[0].tolist() == [1.0, 0.0, 0.0] and s.category_share[1].tolist() == [0.0, 0.0, 0.0]


def test_covisitation_sums_neighbour_weights_times_log_invoices() -> None:
    s = summarize(HIST, stats())
    keys, score = covisitation(HIST, s, stats())
    got = dict(zip(keys.tolist(), score.tolist(), strict=True))
    assert got == pytest.approx({3: 0.5 * np.log1p(2) + 1.0 * np.log1p(1), 4: 0.25 * np.log1p(2)})


def test_rows_carry_repeat_recency_popularity_and_context_exactly() -> None:
    st = stats()
    s = summarize(HIST, st)
    ptr, item = np.array([0, 3, 4]), np.array([0, 3, 5, 0])
    x = ranker_rows(HIST, s, st, ptr, item, np.array([0.1, 0.2, 0.3, 0.4]))
    assert x.shape == (4, N_FEATURES) and x.dtype == np.float32
    bought = x[0]
    assert bought[F["log_item_invoices"]] == pytest.approx(np.log1p(2))
    assert bought[F["item_invoice_share"]] == 1.0 and bought[F["bought_before"]] == 1.0
    assert bought[F["log_days_since_item"]] == pytest.approx(np.log1p(5))
    assert bought[F["item_recency_decay"]] == pytest.approx(np.exp(-5 / 30))
    assert bought[F["repeat_rank_inv"]] == 1.0 and bought[F["category_share"]] == 1.0
    assert bought[F["log_days_since_any"]] == pytest.approx(np.log1p(5)) and bought[F["has_history"]] == 1.0
    assert bought[F["log_baskets"]] == pytest.approx(np.log1p(2))
    assert bought[F["log_popularity"]] == pytest.approx(np.log1p(10)) and bought[F["repeat_rate"]] == 0.5
    never = x[1]  # item 3: co-visited, never bought
    assert never[F["bought_before"]] == 0 and never[F["log_days_since_item"]] == 0
    assert never[F["repeat_rank_inv"]] == 0
    assert never[F["covisitation"]] == pytest.approx(np.log1p(0.5 * np.log1p(2) + np.log1p(1)))
    assert never[F["log_price"]] == pytest.approx(np.log(8)) and never[F["tower_score"]] == pytest.approx(0.2)
    cold = x[3]  # the customer without history asks for item 0
    assert cold[F["has_history"]] == 0 and cold[F["log_baskets"]] == 0 and cold[F["bought_before"]] == 0
    assert cold[F["log_popularity"]] == pytest.approx(np.log1p(10))


def test_candidates_union_past_covisited_tower_and_popular_distinct_per_query() -> None:
    st = stats()
    s = summarize(HIST, st)
    ptr, item = candidates(HIST, s, st, np.array([[5, -1], [2, 2]]), n_past=1, n_covis=1, n_popular=1)
    per_query = [item[ptr[q]:ptr[q + 1]].tolist() for q in range(2)]
    # query 0: past item 0 (best by invoices), co-visited 3, tower 5, popular 0; query 1: tower 2, popular 0
    assert per_query == [[0, 3, 5], [0, 2]]


def test_tower_input_is_the_last_purchases_most_recent_first_padded() -> None:
    assert tower_input(HIST, 4, pad=6).tolist() == [[1, 0, 0, 6], [6, 6, 6, 6]]
    assert tower_input(HIST, 1, pad=6).tolist() == [[1], [6]]


def test_single_history_ages_from_timestamps() -> None:
    h = Histories.single(np.array([2]), np.array([7]), np.array([0]), now_ms=86_400_000 * 3)
    assert h.ptr.tolist() == [0, 1] and h.age_days.tolist() == [3.0]


def text_stats() -> ItemStats:
    """``stats()`` with 3-d unit text vectors: items 0 and 1 along x and y, 2 between them, 3..5 along z."""
    text = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]], np.float32)
    st = stats()
    return ItemStats(st.popularity, st.recent_popularity, st.price, st.category, st.repeat_rate, st.covis_items,
                     st.covis_weights, text)


def test_text_affinity_is_the_cosine_to_the_invoice_weighted_history_text_mean() -> None:
    st = text_stats()
    s = summarize(HIST, st)
    # query 0 bought item 0 in two invoices and item 1 in one: mean direction (2, 1, 0) / sqrt(5)
    assert s.text_mean[0] == pytest.approx(np.array([2, 1, 0]) / np.sqrt(5), abs=1e-6)
    assert s.text_mean[1].tolist() == [0.0, 0.0, 0.0]
    ptr, item = np.array([0, 3, 4]), np.array([0, 2, 3, 2])
    x = ranker_rows(HIST, s, st, ptr, item, np.zeros(4))
    got = x[:, F["text_affinity"]]
    assert got[0] == pytest.approx(2 / np.sqrt(5)) and got[1] == pytest.approx((2 * 0.6 + 0.8) / np.sqrt(5))
    assert got[2] == 0.0      # orthogonal text
    assert got[3] == 0.0      # query 1 has no history


def test_text_affinity_is_zero_without_text_vectors() -> None:
    s = summarize(HIST, stats())
    assert s.text_mean is None
    x = ranker_rows(HIST, s, stats(), np.array([0, 1, 1]), np.array([0]), np.zeros(1))
    assert x[0, F["text_affinity"]] == 0.0 and x.shape == (1, N_FEATURES) == (1, 29)


def test_history_text_mean_is_blocked_without_changing_the_result(monkeypatch) -> None:
    import strata.shared.models.ranker_features as RF

    want = summarize(HIST, text_stats()).text_mean
    monkeypatch.setattr(RF, "TEXT_BLOCK", 1)       # every (query, item) row its own block
    assert summarize(HIST, text_stats()).text_mean == pytest.approx(want)


def test_next_basket_features_by_hand() -> None:
    st = stats()
    s = summarize(HIST, st)
    x = ranker_rows(HIST, s, st, np.array([0, 3, 3]), np.array([0, 1, 3]), np.zeros(3))
    item0, item1, never = x
    # two baskets, fewer than TIFU_M: one group each, G = 2; basket 1 weighs 0.7 / 2, basket 2 weighs 1 / 2
    assert item0[F["tifu_personal"]] == pytest.approx(0.35 + 0.5) and item1[F["tifu_personal"]] == pytest.approx(0.5)
    assert item0[F["in_last_basket"]] == 1.0 and item1[F["in_last_basket"]] == 1.0
    assert item0[F["last5_share"]] == 1.0 and item1[F["last5_share"]] == 0.5
    assert item0[F["baskets_since_item_inv"]] == 1.0
    # item 0 bought 20 and 5 days ago: a 15-day gap, last bought 5 days ago
    assert item0[F["log_mean_gap_days"]] == pytest.approx(np.log1p(15.0))
    assert item0[F["due_ratio"]] == pytest.approx(np.log(6.0 / 16.0))
    assert item1[F["log_mean_gap_days"]] == 0.0 and item1[F["due_ratio"]] == 0.0  # bought once
    assert item0[F["repeat_share"]] == pytest.approx(1 / 3)  # 3 purchases, 2 distinct items
    assert item0[F["log_basket_size"]] == pytest.approx(np.log1p(1.5))
    for name in ("tifu_personal", "in_last_basket", "last5_share", "baskets_since_item_inv", "tifu_neighbours",
                 "log_first_basket_popularity"):
        assert never[F[name]] == 0.0  # never bought; no customer table, no first-basket counts


# customer 0 bought item 0; customer 1 item 2; customer 2 items 0, 1, 3 (TIFU weights as given)
TABLE = CustomerVectors.from_pairs(np.array([0, 1, 2, 2, 2]), np.array([0, 2, 0, 1, 3]),
                                   np.array([1.0, 1.0, 0.8, 0.5, 0.2]), 6)


def test_nearest_customers_by_euclidean_distance_of_tifu_vectors() -> None:
    # query 0's vector is {0: 0.85, 1: 0.5}: squared distances 0.2725, 1.9725, 0.0425; query 1 has none
    near = nearest_customers(np.array([0, 0]), np.array([0, 1]), np.array([0.85, 0.5]), 2, TABLE, k=2)
    assert sorted(near[0].tolist()) == [0, 2] and near[1].tolist() == [-1, -1]
    got = neighbour_values(near, np.array([0, 3, 2, 6]), 6, TABLE)  # keys q * 6 + item; 6 = query 1, item 0
    assert got.tolist() == pytest.approx([0.9, 0.1, 0.0, 0.0])


def test_rows_carry_the_neighbour_mean_and_first_basket_popularity() -> None:
    base = stats()
    st = ItemStats(base.popularity, base.recent_popularity, base.price, base.category, base.repeat_rate,
                   base.covis_items, base.covis_weights, None, np.array([3, 0, 0, 1, 0, 0], np.float32), TABLE)
    s = summarize(HIST, st)
    x = ranker_rows(HIST, s, st, np.array([0, 3, 4]), np.array([0, 2, 3, 0]), np.zeros(4))
    # three customers, fewer than NEIGHBOURS: all of them, the mean over three
    assert x[:3, F["tifu_neighbours"]].tolist() == pytest.approx([1.8 / 3, 1 / 3, 0.2 / 3])
    assert x[3, F["tifu_neighbours"]] == 0.0  # no history, no neighbours
    assert x[0, F["log_first_basket_popularity"]] == pytest.approx(np.log1p(3))


def test_fresh_items_are_candidates_and_a_feature() -> None:
    base = stats()
    st = ItemStats(base.popularity, base.recent_popularity, base.price, base.category, base.repeat_rate,
                   base.covis_items, base.covis_weights, recent_first_popularity=np.array([0, 0, 0, 0, 2, 5],
                                                                                         np.float32))
    assert st.fresh(2).tolist() == [5, 4] and base.fresh(2).tolist() == []
    s = summarize(HIST, st)
    ptr, item = candidates(HIST, s, st, None, n_past=0, n_covis=0, n_popular=1, n_fresh=1)
    assert [item[ptr[q]:ptr[q + 1]].tolist() for q in range(2)] == [[0, 5], [0, 5]]  # popular 0, fresh 5
    x = ranker_rows(HIST, s, st, ptr, item, np.zeros(item.size))
    assert x[:, F["log_recent_first_popularity"]].tolist() == pytest.approx([0.0, np.log1p(5)] * 2)


def test_item_stats_file_round_trips_the_customer_table_and_refuses_a_broken_one(tmp_path) -> None:
    from strata.shared.errors import BundleError
    from strata.shared.models.ranker_bundle import ITEM_STATS_FILE, item_stats_arrays, read_item_stats

    base = stats()
    st = ItemStats(base.popularity, base.recent_popularity, base.price, base.category, base.repeat_rate,
                   base.covis_items, base.covis_weights, None, np.array([3, 0, 0, 1, 0, 0], np.float32), TABLE,
                   np.array([0, 0, 0, 1, 0, 0], np.float32))
    np.savez(tmp_path / ITEM_STATS_FILE, **item_stats_arrays(st))
    back = read_item_stats(tmp_path)
    assert back.recent_first_popularity.tolist() == [0, 0, 0, 1, 0, 0]
    assert back.customers.ptr.tolist() == TABLE.ptr.tolist() and back.customers.item.tolist() == TABLE.item.tolist()
    assert back.customers.square.tolist() == pytest.approx(TABLE.square.tolist())
    arrays = item_stats_arrays(st) | {"customer_item": np.array([0, 2, 0, 1, 9])}  # item 9 of 6
    np.savez(tmp_path / ITEM_STATS_FILE, **arrays)
    with pytest.raises(BundleError, match="customer vectors are inconsistent"):
        read_item_stats(tmp_path)
