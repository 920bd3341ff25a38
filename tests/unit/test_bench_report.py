"""Benchmark bookkeeping: verdicts, ratios, cache counters from a Prometheus exposition, bandit parity."""

from __future__ import annotations

import numpy as np

from strata.loadtest.bench_bandit import fit_mabwiser, make_history
from strata.loadtest.bench_http import cache_counts
from strata.loadtest.bench_report import Target, add_ratios, verdict
from strata.shared.ranking.bandit import posterior

EXPOSITION = """\
# HELP strata_edge_cache_requests_total cache lookups
# TYPE strata_edge_cache_requests_total gauge
strata_edge_cache_requests_total{cache="response",result="hit"} 30.0
strata_edge_cache_requests_total{cache="response",result="miss"} 10.0
strata_edge_cache_requests_total{cache="session",result="hit"} 99.0
strata_edge_cache_requests_total{cache="session",result="miss"} 1.0
strata_edge_cache_hit_ratio{cache="response"} 0.75
strata_edge_requests_total{route="/v1/recommend",status="200"} 40.0
"""


def test_verdicts_pass_and_miss_with_distance() -> None:
    hi = Target("x", "k", ">=", 2.0, "x")
    lo = Target("p99", "k", "<=", 5.0, "ms")
    assert verdict(hi, 2.0) == ("PASS", "")
    assert verdict(hi, 1.5) == ("MISS", "75% of target (0.5x short)")
    assert verdict(lo, 4.9) == ("PASS", "")
    assert verdict(lo, 7.5) == ("MISS", "1.50x the bound (2.5ms over)")
    assert verdict(lo, None) == ("n/a", "not measured")


def test_ratios_only_when_both_sides_measured() -> None:
    r = {"edge_rps_c8": 9000.0, "lean_rps_c8": 3000.0, "fastapi_rps_c8": 1500.0, "edge_rps_c64": 100.0}
    add_ratios(r)
    assert r["ratio_edge_over_lean_c8"] == 3.0
    assert r["ratio_edge_over_fastapi_c8"] == 6.0
    assert r["ratio_edge_over_lean_c64"] is None
    assert r["ratio_edge_nocache_over_lean_c8"] is None


def test_cache_counts_reads_response_cache_only() -> None:
    assert cache_counts(EXPOSITION) == (30.0, 10.0)
    assert cache_counts("strata_edge_requests_total 3.0\n") is None


def test_both_bandits_sample_the_same_posterior() -> None:
    h = make_history(n_arms=7, seed=1)
    assert int(h.rewards.sum()) == int(h.clicks.sum())
    assert h.decisions.shape[0] == int(h.imps.sum())
    alpha, beta = posterior(np.full(7, 0.5), h.clicks, h.imps, n0=2.0)
    mab = fit_mabwiser(h)
    succ = np.array([mab._imp.arm_to_success_count[a] for a in range(7)], dtype=float)
    fail = np.array([mab._imp.arm_to_fail_count[a] for a in range(7)], dtype=float)
    np.testing.assert_array_equal(alpha, succ)
    np.testing.assert_array_equal(beta, fail)


def test_the_auth_target_is_the_median_pair_when_there_are_rounds() -> None:
    """Three back-to-back on/off pairs: one noisy pair does not decide the verdict (the ratio of medians would
    mix pairs measured minutes apart)."""
    r = {"edge_auth_rps_c8": 80.0, "edge_authoff_rps_c8": 100.0, "edge_auth_ratio_rounds_c8": [0.95, 0.62, 0.93],
         "edge_auth_nocache_rps_c8": 90.0, "edge_authoff_nocache_rps_c8": 100.0}
    add_ratios(r)
    assert r["ratio_edge_auth_over_off_c8"] == 0.93
    assert r["ratio_edge_auth_nocache_over_off_c8"] == 0.9      # no rounds (a quick run): the plain ratio
