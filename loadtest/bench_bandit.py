"""Thompson decisions/s over 100 arms: shared.ranking.bandit against MABWiser's ThompsonSampling.

Both sides sample the same posteriors: MABWiser keeps Beta(1 + successes, 1 + failures) per arm
after ``fit``; ``posterior(p=0.5, clicks, imps, n0=2)`` gives exactly those parameters. Two modes,
each like-for-like with its counterpart:
- single: one decision per call (``choose_arm`` vs ``predict()``), what a request handler does;
- batched: n decisions per call (``choose_arms`` vs ``predict(contexts=np.zeros((n, 1)))``).
Ours runs on ``make_sampler`` (the compiled exact sampler when built); the same decision on NumPy's
``Generator.beta`` is measured too, so the table shows what the compiled kernel buys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from strata.shared.ranking.bandit import SAMPLER, choose_arm, choose_arms, make_sampler, posterior

N_ARMS = 100


@dataclass(frozen=True, slots=True)
class BanditHistory:
    """Impressions and clicks per arm, plus the same history as decision/reward rows for MABWiser."""

    clicks: np.ndarray
    imps: np.ndarray
    decisions: np.ndarray
    rewards: np.ndarray


def make_history(n_arms: int = N_ARMS, seed: int = 11) -> BanditHistory:
    rng = np.random.default_rng(seed)
    imps = rng.integers(20, 400, size=n_arms)
    clicks = rng.binomial(imps, rng.uniform(0.01, 0.2, size=n_arms))
    decisions = np.repeat(np.arange(n_arms), imps)
    rewards = np.concatenate([np.r_[np.ones(c), np.zeros(n - c)] for c, n in zip(clicks, imps, strict=True)])
    return BanditHistory(clicks, imps, decisions, rewards)


def _rate(fn, min_seconds: float, decisions_per_call: int) -> float:
    """Decisions/s of ``fn`` called repeatedly for at least ``min_seconds`` (after a short warm-up)."""
    for _ in range(3):
        fn()
    calls = 0
    start = time.perf_counter_ns()
    deadline = start + int(min_seconds * 1e9)
    now = start
    while now < deadline:
        for _ in range(10):
            fn()
        calls += 10
        now = time.perf_counter_ns()
    return calls * decisions_per_call / ((now - start) / 1e9)


def measure_ours(history: BanditHistory, seconds: float, batch: int, seed: int = 3) -> dict[str, float]:
    alpha, beta = posterior(np.full(history.clicks.shape, 0.5), history.clicks, history.imps, n0=2.0)
    rng = make_sampler(seed)
    gen = np.random.default_rng(seed)
    return {
        "single": _rate(lambda: choose_arm(alpha, beta, rng), seconds, 1),
        "single_numpy": _rate(lambda: choose_arm(alpha, beta, gen), seconds, 1),
        "batched": _rate(lambda: choose_arms(alpha, beta, batch, rng), seconds, batch),
    }


def fit_mabwiser(history: BanditHistory, seed: int = 3):
    from mabwiser.mab import MAB, LearningPolicy

    mab = MAB(list(range(history.clicks.shape[0])), LearningPolicy.ThompsonSampling(), seed=seed)
    mab.fit(history.decisions, history.rewards)
    return mab


def measure_mabwiser(history: BanditHistory, seconds: float, batch: int, seed: int = 3) -> dict[str, float]:
    mab = fit_mabwiser(history, seed)
    contexts = np.zeros((batch, 1))
    return {
        "single": _rate(mab.predict, seconds, 1),
        "batched": _rate(lambda: mab.predict(contexts=contexts), seconds, batch),
    }


def run(seconds: float = 2.0, batch: int = 1000) -> dict[str, float]:
    """Both libraries, both modes; ``ts_decisions_per_s`` / ``mabwiser_decisions_per_s`` are the
    single-decision (per-request) mode, the like-for-like headline."""
    history = make_history()
    ours = measure_ours(history, seconds, batch)
    theirs = measure_mabwiser(history, seconds, batch)
    return {
        "ts_decisions_per_s": ours["single"],
        "mabwiser_decisions_per_s": theirs["single"],
        "ts_numpy_decisions_per_s": ours["single_numpy"],
        "ts_batched_decisions_per_s": ours["batched"],
        "mabwiser_batched_decisions_per_s": theirs["batched"],
        "ratio_ts_over_mabwiser": ours["single"] / theirs["single"],
        "ratio_ts_over_mabwiser_batched": ours["batched"] / theirs["batched"],
        "ts_arms": history.clicks.shape[0],
        "ts_sampler": SAMPLER,
        "ts_batch": batch,
    }
