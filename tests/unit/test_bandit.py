"""Beta-Bernoulli Thompson sampling: exact posteriors, seeded exact decisions, the exploration cap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from strata.shared.ranking.bandit import (
    BanditConfig,
    Decision,
    choose_arm,
    choose_arms,
    posterior,
    thompson_topk,
)
from strata.shared.ranking.confidence import margin_at_k

# Eight arms with flat, uncertain posteriors: means 0.30, 0.28, ..., 0.16 (greedy top-3 = {0, 1, 2}).
ALPHA = np.array([3.0, 2.8, 2.6, 2.4, 2.2, 2.0, 1.8, 1.6])
BETA = 10.0 - ALPHA


def reference_topk(alpha: np.ndarray, beta: np.ndarray, k: int, budget: int, seed: int):
    """Brute-force restatement of the documented policy, from a same-seeded draw."""
    theta = np.random.default_rng(seed).beta(alpha, beta)
    mean = alpha / (alpha + beta)
    n = len(alpha)
    by_theta = sorted(range(n), key=lambda i: -theta[i])
    if n <= k:
        return by_theta, [False] * n, 1.0
    means_desc = sorted(mean.tolist(), reverse=True)
    kth = means_desc[k - 1]
    greedy = {i for i in range(n) if mean[i] >= kth}
    top = by_theta[:k]
    explored = [i for i in top if i not in greedy]   # already best-sampled first
    if len(explored) > budget:
        # the best k - budget greedy items and the best budget explored items, both by their draws
        top = [i for i in by_theta if i in greedy][: k - budget] + explored[:budget]
    order = sorted(top, key=lambda i: -theta[i])
    return order, [i not in greedy for i in order], means_desc[k - 1] - means_desc[k]


# ---- posterior ---------------------------------------------------------------------------------------------

def test_posterior_exact_values() -> None:
    p = np.array([0.1, 0.5, 0.25])
    clicks = np.array([2, 0, 1])
    imps = np.array([10, 0, 1])
    alpha, beta = posterior(p, clicks, imps, 20.0)
    assert alpha.dtype == np.float64 and beta.dtype == np.float64
    assert alpha.tolist() == [4.0, 10.0, 6.0]     # 20p + clicks
    assert beta.tolist() == [26.0, 10.0, 15.0]    # 20(1-p) + imps - clicks


def test_posterior_impressions_below_clicks_are_clamped() -> None:
    alpha, beta = posterior(np.array([0.5]), np.array([5.0]), np.array([3.0]), 10.0)
    assert alpha.tolist() == [10.0] and beta.tolist() == [5.0]   # failures max(3 - 5, 0) = 0


def test_the_lift_form_scales_the_scorers_p_by_clicks_over_expected_clicks() -> None:
    """Where the counts hold expected clicks: mean p (s + c) / (s + E), concentration n0 + n."""
    p = np.array([0.1, 0.4, 0.2])
    clicks, imps, expected = np.array([30.0, 5.0, 4.0]), np.array([100.0, 50.0, 20.0]), np.array([10.0, 20.0, 0.0])
    alpha, beta = posterior(p, clicks, imps, 1000.0, expected, lift_prior=20.0)
    mean = alpha / (alpha + beta)
    assert mean[0] == pytest.approx(0.1 * 50 / 30) and mean[1] == pytest.approx(0.4 * 25 / 40)
    assert (alpha + beta)[:2].tolist() == pytest.approx([1100.0, 1050.0])
    # no expected clicks (counts from before the processor summed them): the pooled form
    assert (alpha[2], beta[2]) == pytest.approx((1000 * 0.2 + 4, 1000 * 0.8 + 16))
    # lift_prior 0 or no expected clicks at all: the pooled form everywhere
    for got in (posterior(p, clicks, imps, 1000.0, expected, 0.0), posterior(p, clicks, imps, 1000.0)):
        assert got[0].tolist() == pytest.approx((1000 * p + clicks).tolist())


def test_pooled_counts_pull_every_shopper_to_the_items_ctr_the_lift_keeps_their_own_p() -> None:
    """The reason for the lift: the counts are per item over all shoppers. An item clicked by 30% of everyone
    it was shown to, which the scorer rates 0.6 for one shopper and 0.05 for another: after 100,000
    impressions the pooled posterior gives both about 0.30; the lift keeps 0.6 : 0.05 (times the item's lift)."""
    clicks, imps = np.array([30_000.0]), np.array([100_000.0])
    expected = np.array([25_000.0])                  # the scorer expected 25,000 clicks on those impressions
    fan, other = np.array([0.6]), np.array([0.05])
    pooled = [posterior(p, clicks, imps, 1000.0) for p in (fan, other)]
    means = [float(a[0] / (a[0] + b[0])) for a, b in pooled]
    assert means[0] - means[1] < 0.01                # personal p washed out
    lifted = [posterior(p, clicks, imps, 1000.0, expected, 20.0) for p in (fan, other)]
    means = [float(a[0] / (a[0] + b[0])) for a, b in lifted]
    assert means == pytest.approx([0.6 * 30_020 / 25_020, 0.05 * 30_020 / 25_020])


def test_the_lift_mean_stays_a_probability() -> None:
    alpha, beta = posterior(np.array([0.9]), np.array([500.0]), np.array([500.0]), 10.0, np.array([1.0]), 1.0)
    assert 0 < alpha[0] / (alpha[0] + beta[0]) < 1 and beta[0] >= 1e-3


def test_posterior_p_zero_and_one_clamped_to_min_param() -> None:
    alpha, beta = posterior(np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), 20.0)
    assert alpha.tolist() == [1e-3, 20.0]
    assert beta.tolist() == [20.0, 1e-3]
    # still a valid Beta: a draw does not raise
    draws = np.random.default_rng(0).beta(alpha, beta)
    assert np.all((draws >= 0) & (draws <= 1))


def test_posterior_does_not_mutate_inputs() -> None:
    p, c, n = np.array([0.2, 0.4]), np.array([1.0, 2.0]), np.array([5.0, 1.0])
    posterior(p, c, n, 20.0)
    assert p.tolist() == [0.2, 0.4] and c.tolist() == [1.0, 2.0] and n.tolist() == [5.0, 1.0]


def test_posterior_data_takes_over_from_prior() -> None:
    alpha, beta = posterior(np.array([0.9]), np.array([10.0]), np.array([1000.0]), 20.0)
    assert alpha[0] / (alpha[0] + beta[0]) == pytest.approx((18 + 10) / 1020)


# ---- BanditConfig ------------------------------------------------------------------------------------------

def test_bandit_config_defaults_and_frozen() -> None:
    cfg = BanditConfig()
    assert (cfg.n0, cfg.explore_budget, cfg.cold_prior) == (1000.0, 0.2, 0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n0 = 5.0  # type: ignore[misc]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n0": 0.0}, "n0 must be > 0"),
    ({"n0": -1.0}, "n0 must be > 0"),
    ({"n0": float("nan")}, "n0 must be > 0"),
    ({"explore_budget": -0.1}, r"explore_budget must be in \[0, 1\]"),
    ({"explore_budget": 1.5}, r"explore_budget must be in \[0, 1\]"),
    ({"explore_budget": float("nan")}, r"explore_budget must be in \[0, 1\]"),
    ({"cold_prior": 0.0}, r"cold_prior must be in \(0, 1\)"),
    ({"cold_prior": 1.0}, r"cold_prior must be in \(0, 1\)"),
])
def test_bandit_config_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanditConfig(**kwargs)


@pytest.mark.parametrize(("budget", "k", "slots"), [
    (0.3, 1, 0), (0.3, 3, 0), (0.3, 4, 1), (0.3, 10, 3), (0.3, 100, 30), (0.0, 10, 0), (1.0, 7, 7),
    (0.5, 5, 2),
])
def test_budget_slots_floor(budget: float, k: int, slots: int) -> None:
    assert BanditConfig(explore_budget=budget).budget_slots(k) == slots


@pytest.mark.parametrize(("budget", "k", "slots"), [(0.29, 100, 29), (0.57, 100, 57), (0.07, 100, 7)])
def test_budget_slots_exact_share_is_not_lost_to_float_rounding(budget: float, k: int, slots: int) -> None:
    # 0.29 * 100 == 28.999999999999996 in binary floating point; the share is exactly 29 positions.
    assert BanditConfig(explore_budget=budget).budget_slots(k) == slots


# ---- thompson_topk -----------------------------------------------------------------------------------------

def test_thompson_topk_seeded_exact_outputs() -> None:
    d = thompson_topk(ALPHA, BETA, 3, 1, np.random.default_rng(0))
    assert isinstance(d, Decision)
    # draws (seed 0): 6 -> .324, 0 -> .254, 5 -> .202, 2 -> .198, 1 -> .136; greedy = {0, 1, 2}. 5 and 6 are
    # explored, the cap keeps the best-drawn one (6) and the two best-drawn greedy items (0, 2)
    assert d.order.tolist() == [6, 0, 2]
    assert d.explored.tolist() == [True, False, False]
    np.testing.assert_array_equal(d.theta, np.random.default_rng(0).beta(ALPHA, BETA))
    np.testing.assert_array_equal(d.mean, ALPHA / 10.0)
    assert d.margin == pytest.approx(0.02)
    d4 = thompson_topk(ALPHA, BETA, 3, 1, np.random.default_rng(4))
    assert d4.order.tolist() == [3, 0, 1] and d4.explored.tolist() == [True, False, False]


def test_thompson_topk_without_cap_is_the_sampled_topk() -> None:
    d = thompson_topk(ALPHA, BETA, 3, 3, np.random.default_rng(0))
    assert d.order.tolist() == [6, 0, 5]
    assert d.explored.tolist() == [True, False, True]
    assert d.order.tolist() == np.argsort(-d.theta)[:3].tolist()


@pytest.mark.parametrize("budget", [0, 1, 2, 3])
def test_thompson_topk_matches_brute_force_reference(budget: int) -> None:
    capped = 0
    for seed in range(200):
        d = thompson_topk(ALPHA, BETA, 3, budget, np.random.default_rng(seed))
        order, explored, margin = reference_topk(ALPHA, BETA, 3, budget, seed)
        assert d.order.tolist() == order, seed
        assert d.explored.tolist() == explored, seed
        assert d.margin == pytest.approx(margin)
        raw = np.argsort(-d.theta)[:3]
        capped += int(np.count_nonzero(d.mean[raw] < 0.26 - 1e-12) > budget)
    if budget < 3:
        assert capped > 10   # the cap path really ran


@pytest.mark.parametrize(("k", "budget"), [(1, 0), (2, 1), (4, 1), (5, 2), (7, 3)])
def test_exploration_cap_is_never_exceeded(k: int, budget: int) -> None:
    rng = np.random.default_rng(42)
    alpha = rng.uniform(0.5, 3.0, 40)
    beta = rng.uniform(2.0, 20.0, 40)
    for seed in range(100):
        d = thompson_topk(alpha, beta, k, budget, np.random.default_rng(seed))
        assert d.order.shape == (k,)
        assert len(set(d.order.tolist())) == k
        assert int(d.explored.sum()) <= budget
        # output is ordered by the draw, best first
        assert np.all(np.diff(d.theta[d.order]) <= 0)


def test_budget_zero_returns_the_greedy_set() -> None:
    mean = ALPHA / (ALPHA + BETA)
    greedy = set(np.argsort(-mean)[:3].tolist())
    for seed in range(50):
        d = thompson_topk(ALPHA, BETA, 3, 0, np.random.default_rng(seed))
        assert set(d.order.tolist()) == greedy
        assert not d.explored.any()


@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_at_most_k_returns_all_by_draw_with_margin_one(n: int) -> None:
    alpha, beta = ALPHA[:n], BETA[:n]
    d = thompson_topk(alpha, beta, 5, 0, np.random.default_rng(9))
    theta = np.random.default_rng(9).beta(alpha, beta)
    assert d.order.tolist() == sorted(range(n), key=lambda i: -theta[i])
    assert d.explored.tolist() == [False] * n
    assert d.margin == 1.0


def test_margin_is_gap_between_kth_and_next_mean() -> None:
    alpha = np.array([9.0, 6.0, 5.0, 1.0])
    beta = np.array([1.0, 4.0, 5.0, 9.0])   # means .9 .6 .5 .1
    for k, gap in [(1, 0.3), (2, 0.1), (3, 0.4)]:
        d = thompson_topk(alpha, beta, k, k, np.random.default_rng(1))
        assert d.margin == pytest.approx(gap)
        assert d.margin == margin_at_k(d.mean, k)


def test_all_means_tied_nothing_explored_margin_zero() -> None:
    alpha = np.full(6, 2.0)
    beta = np.full(6, 8.0)
    d = thompson_topk(alpha, beta, 2, 0, np.random.default_rng(3))
    assert not d.explored.any()
    assert d.margin == 0.0
    theta = np.random.default_rng(3).beta(alpha, beta)
    assert d.order.tolist() == np.argsort(-theta)[:2].tolist()   # ties at the boundary count as greedy


def test_tie_at_the_boundary_counts_as_greedy() -> None:
    alpha = np.array([9.0, 5.0, 5.0, 1.0])
    beta = np.array([1.0, 5.0, 5.0, 9.0])   # means .9 .5 .5 .1, k=2 -> kth .5; items 1 and 2 both greedy
    for seed in range(30):
        d = thompson_topk(alpha, beta, 2, 0, np.random.default_rng(seed))
        assert set(d.order.tolist()) <= {0, 1, 2}
        assert not d.explored.any()
        assert d.margin == 0.0


def test_same_seed_same_decision_different_seed_differs() -> None:
    a = thompson_topk(ALPHA, BETA, 3, 1, np.random.default_rng(123))
    b = thompson_topk(ALPHA, BETA, 3, 1, np.random.default_rng(123))
    c = thompson_topk(ALPHA, BETA, 3, 1, np.random.default_rng(124))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.order.tolist() == b.order.tolist()
    assert not np.array_equal(a.theta, c.theta)


# ---- choose_arm(s) -----------------------------------------------------------------------------------------

def test_choose_arm_is_argmax_of_same_seeded_draw() -> None:
    for seed in range(20):
        expected = int(np.argmax(np.random.default_rng(seed).beta(ALPHA, BETA)))
        assert choose_arm(ALPHA, BETA, np.random.default_rng(seed)) == expected


def test_choose_arms_is_rowwise_argmax_of_same_seeded_draws() -> None:
    got = choose_arms(ALPHA, BETA, 64, np.random.default_rng(5))
    draws = np.random.default_rng(5).beta(ALPHA, BETA, size=(64, 8))
    assert got.shape == (64,)
    np.testing.assert_array_equal(got, np.argmax(draws, axis=1))


def test_much_better_arm_is_chosen_most_often() -> None:
    alpha = np.array([5.0, 60.0, 10.0])
    beta = np.array([95.0, 40.0, 90.0])   # means .05 .6 .1
    picks = choose_arms(alpha, beta, 5_000, np.random.default_rng(2024))
    counts = np.bincount(picks, minlength=3)
    assert counts.sum() == 5_000
    assert counts[1] >= 4_950
    singles = [choose_arm(alpha, beta, np.random.default_rng(s)) for s in range(300)]
    assert singles.count(1) >= 295


def test_uncertain_arm_is_explored_sometimes() -> None:
    # same mean, one arm nearly certain, one very uncertain: Thompson picks both with some frequency
    alpha = np.array([500.0, 1.0])
    beta = np.array([500.0, 1.0])
    counts = np.bincount(choose_arms(alpha, beta, 4_000, np.random.default_rng(8)), minlength=2)
    assert 1_600 < counts[1] < 2_400
