"""Ranking metrics on hand-made lists, against values worked out by hand from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse

from strata.model_export.evaluation.metrics import (
    METRICS,
    coverage,
    explore_relevance,
    hits,
    intra_list_diversity,
    ndcg,
    ndcg_at,
    novelty,
    recall_at,
    recall_curve,
    reciprocal_rank,
    relevant_counts,
    summarize,
)

N_ITEMS = 10
# query 0: relevant {1, 3, 5}; hits at ranks 0 and 2
# query 1: relevant {4};       hit at rank 3
# query 2: relevant {9};       no hit
RECS = np.array([[3, 0, 5, 2, 4], [0, 1, 2, 4, 3], [0, 1, 2, 3, 4]])
RELEVANT = [[1, 3, 5], [4], [9]]


def _relevant(rows: list[list[int]], n_items: int = N_ITEMS) -> sparse.csr_matrix:
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [item for items in rows for item in items]
    return sparse.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_hits_mark_relevant_ranks() -> None:
    assert hits(RECS, _relevant(RELEVANT)).tolist() == [
        [True, False, True, False, False], [False, False, False, True, False], [False] * 5]


def test_recall_ndcg_mrr_by_hand() -> None:
    hit, n_rel = hits(RECS, _relevant(RELEVANT)), relevant_counts(_relevant(RELEVANT))
    assert recall_at(hit, n_rel, 10).tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    assert recall_at(hit, n_rel, 2).tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    # DCG = 1/log2(1+1) + 1/log2(3+1) = 1.5; ideal = 1 + 1/log2(3) + 1/2 (three relevant items)
    ideal0 = 1.0 + 1.0 / math.log2(3) + 0.5
    assert ndcg(hit, n_rel, 10).tolist() == pytest.approx([1.5 / ideal0, 1.0 / math.log2(5), 0.0])
    assert reciprocal_rank(hit).tolist() == [1.0, 0.25, 0.0]
    assert ndcg_at(RECS, _relevant(RELEVANT), 10) == pytest.approx((1.5 / ideal0 + 1.0 / math.log2(5)) / 3)


def test_ideal_dcg_caps_at_k() -> None:
    # 12 relevant items, the list holds 10 of them: a perfect top-10, NDCG@10 = 1 while recall@10 = 10/12
    rel = _relevant([list(range(12))], n_items=20)
    recs = np.arange(10)[None, :]
    hit = hits(recs, rel)
    assert ndcg(hit, relevant_counts(rel), 10).tolist() == pytest.approx([1.0])
    assert recall_at(hit, relevant_counts(rel), 10).tolist() == pytest.approx([10 / 12])


def test_coverage_diversity_novelty_by_hand() -> None:
    category = np.array([0, 0, 1, 2])
    lists = np.array([[0, 1, 2], [0, 2, 3]])
    assert coverage(lists, n_items=8) == 4 / 8
    # [0, 0, 1]: 3 pairs, 1 same-category pair -> 2/3; [0, 1, 2]: all differ -> 1
    assert intra_list_diversity(lists, category).tolist() == pytest.approx([2 / 3, 1.0])
    popularity = np.array([4, 1, 0, 2])  # of 8 invoices; the unsold item counts as sold once
    # -log2 of 4/8, 1/8, 1/8, 2/8 = 1, 3, 3, 2
    assert novelty(np.array([[0, 3], [1, 2]]), popularity, n_invoices=8).tolist() == pytest.approx([1.5, 3.0])


def test_summarize_averages_over_queries_and_keeps_the_metric_names() -> None:
    category = np.arange(N_ITEMS) % 3
    popularity = np.arange(N_ITEMS)
    out = summarize(RECS, _relevant(RELEVANT), category, popularity, n_train_invoices=16)
    assert tuple(out) == METRICS
    assert out["recall@10"] == pytest.approx((2 / 3 + 1.0) / 3, abs=1e-6)
    assert out["mrr"] == pytest.approx(1.25 / 3, abs=1e-6)
    assert out["coverage"] == pytest.approx(6 / N_ITEMS)  # items 0..5 appear in the lists
    assert summarize(RECS[:0], _relevant(RELEVANT)[:0], category, popularity, 16) == dict.fromkeys(METRICS)


def test_explore_metrics_score_the_list_against_items_never_bought_before() -> None:
    relevant = _relevant([[1, 2, 5], [0, 4]])
    history = _relevant([[2, 5], [0, 4]])  # query 0 bought 2 and 5 before: its explore item is 1 alone
    explore = explore_relevance(relevant, history)
    assert explore.toarray().nonzero()[1].tolist() == [1]
    recs = np.array([[2, 1, 3, 4, 6], [0, 4, 1, 2, 3]])
    out = summarize(recs, relevant, np.zeros(N_ITEMS, int), np.ones(N_ITEMS), 4, explore=explore)
    # query 1 has no explore item and is left out; query 0's only explore item is at rank 2
    assert out["explore_ndcg@10"] == pytest.approx(1 / np.log2(3), abs=1e-6)
    assert out["explore_recall@20"] == 1.0
    assert summarize(recs, relevant, np.zeros(N_ITEMS, int), np.ones(N_ITEMS), 4)["explore_ndcg@10"] is None


def test_recall_curve_is_cumulative_recall() -> None:
    curve = recall_curve(RECS, _relevant(RELEVANT))
    assert curve == pytest.approx([1 / 9, 1 / 9, (2 / 3) / 3, (2 / 3 + 1) / 3, (2 / 3 + 1) / 3], abs=1e-6)
