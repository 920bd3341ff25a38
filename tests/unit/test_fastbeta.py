"""The compiled exact Beta sampler (shared.ranking._fastbeta via shared.ranking.bandit.make_sampler).

Distribution tests run at fixed seeds, so they are deterministic: a wrong ziggurat table, gamma
squeeze or boost shows as a Kolmogorov-Smirnov rejection at these seeds, never as a flaky failure.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import stats

from strata.shared.ranking import bandit
from strata.shared.ranking.bandit import choose_arm, choose_arms, make_sampler, thompson_topk

pytestmark = pytest.mark.skipif(
    bandit.CompiledBeta is None and os.environ.get("STRATA_ALLOW_NUMPY_SAMPLER") == "1",
    reason="extension not built and STRATA_ALLOW_NUMPY_SAMPLER=1",
)

N = 200_000


def test_extension_is_built_where_a_compiler_exists() -> None:
    # CI and `make test` have gcc: the compiled sampler must be what serving uses.
    assert bandit.SAMPLER == "compiled"
    assert isinstance(make_sampler(1), bandit.CompiledBeta)


def test_seeded_draws_are_pinned() -> None:
    s = make_sampler(7)
    got = s.beta(np.array([1.0, 2.5, 0.3, 50.0]), np.array([49.0, 60.0, 0.7, 50.0]))
    np.testing.assert_allclose(
        got, [0.00998761153602629, 0.011425443799823486, 0.0033753824756224933, 0.5369300665106118],
        rtol=1e-12)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a, b = np.full(50, 2.0), np.full(50, 30.0)
    np.testing.assert_array_equal(make_sampler(3).beta(a, b), make_sampler(3).beta(a, b))
    assert not np.array_equal(make_sampler(3).beta(a, b), make_sampler(4).beta(a, b))
    assert not np.array_equal(make_sampler(None).beta(a, b), make_sampler(None).beta(a, b))


def test_uniforms_and_normals() -> None:
    s = make_sampler(11)
    u = np.array([s.random() for _ in range(50_000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = np.array([s.normal() for _ in range(N)])
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(stats.kurtosis(z)) < 0.05
    assert (np.abs(z) > 3.6541528853610088).sum() > 0          # the ziggurat tail is reached


@pytest.mark.parametrize(("a", "b"), [
    (1.0, 49.0),      # cold prior: n0 * 0.02 with n0 = 50
    (2.5, 60.0),
    (50.0, 50.0),
    (10.0, 300.0),
    (0.05, 49.95),    # a < 1: boost path in log space
    (0.3, 0.7),       # both < 1
    (0.9, 1.5),
    (1.0, 1.0),
])
def test_beta_matches_the_distribution(a: float, b: float) -> None:
    s = make_sampler(20261121)
    draws = s.beta(np.full(N, a), np.full(N, b))
    assert np.isfinite(draws).all() and (draws >= 0).all() and (draws <= 1).all()
    assert stats.kstest(draws, stats.beta(a, b).cdf).pvalue > 1e-3
    reference = np.random.default_rng(5).beta(a, b, N)
    assert stats.ks_2samp(draws, reference).pvalue > 1e-3


def test_tiny_parameters_never_give_nan() -> None:
    draws = make_sampler(2).beta(np.full(10_000, 1e-3), np.full(10_000, 1e-3))
    assert np.isfinite(draws).all()
    assert 0.4 < (draws > 0.5).mean() < 0.6                     # symmetric U shape


def test_argmax_frequencies_are_thompson_win_probabilities() -> None:
    alpha = np.array([3.0, 2.8, 2.6, 2.0, 5.0])
    beta = np.array([7.0, 7.2, 7.4, 8.0, 20.0])
    n = 100_000
    wins = np.bincount(choose_arms(alpha, beta, n, make_sampler(9)), minlength=5) / n
    truth = np.bincount(np.argmax(np.random.default_rng(0).beta(alpha, beta, (400_000, 5)), axis=1),
                        minlength=5) / 400_000
    np.testing.assert_allclose(wins, truth, atol=0.006)


def test_argmax_into_is_repeated_argmax() -> None:
    alpha, beta = np.array([2.0, 3.0, 1.5]), np.array([8.0, 9.0, 6.0])
    s1, s2 = make_sampler(5), make_sampler(5)
    batch = choose_arms(alpha, beta, 200, s1)
    single = [choose_arm(alpha, beta, s2) for _ in range(200)]
    assert batch.tolist() == single


def test_non_contiguous_and_integer_inputs_are_converted() -> None:
    wide = np.ones((10, 2))
    assert 0 <= choose_arm(wide[:, 0], wide[:, 1] * 3, make_sampler(1)) < 10
    assert make_sampler(1).beta(np.array([1, 2]), np.array([3, 4])).shape == (2,)


def test_bad_parameters_are_refused_with_the_index() -> None:
    s = make_sampler(1)
    with pytest.raises(ValueError, match="index 1"):
        s.beta(np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="index 0"):
        choose_arm(np.array([np.nan]), np.array([1.0]), s)
    with pytest.raises(ValueError, match="same"):
        s.fill(np.ones(3), np.ones(2), np.empty(3))
    with pytest.raises(TypeError, match="float64"):
        s.fill(np.ones(3, dtype=np.float32), np.ones(3), np.empty(3))
    with pytest.raises(ValueError, match="non-zero"):
        s.argmax(np.ones(0), np.ones(0))


def test_make_sampler_backends() -> None:
    assert isinstance(make_sampler(1, backend="numpy"), np.random.Generator)
    assert isinstance(make_sampler(1, backend="compiled"), bandit.CompiledBeta)
    with pytest.raises(ValueError, match="backend"):
        make_sampler(1, backend="gpu")


def test_thompson_topk_uses_the_sampler_draw() -> None:
    alpha = np.linspace(1.0, 6.0, 30)
    beta = 40.0 - alpha
    d = thompson_topk(alpha, beta, 8, 2, make_sampler(13))
    np.testing.assert_array_equal(d.theta, make_sampler(13).beta(alpha, beta))
    assert len(set(d.order.tolist())) == 8
    assert d.explored.sum() <= 2
