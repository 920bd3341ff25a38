"""Beta-Bernoulli Thompson sampling with the scorer's click probability as the prior.

For candidate i with model probability p_i, clicks c_i and impressions n_i:
    alpha_i = n0 * p_i + c_i,   beta_i = n0 * (1 - p_i) + (n_i - c_i)
so a new item starts at the model's belief worth n0 pseudo-impressions and the data takes over as
impressions accumulate. Ranking is by one posterior draw per candidate; an item is "explored" when it
is in the sampled top-k but not in the greedy top-k by posterior mean. The exploration budget caps how
many of the k positions explored items may take.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_PARAM = 1e-3


@dataclass(frozen=True, slots=True)
class BanditConfig:
    n0: float = 20.0
    explore_budget: float = 0.3
    cold_prior: float = 0.02

    def __post_init__(self) -> None:
        if not self.n0 > 0:
            raise ValueError("n0 must be > 0")
        if not 0.0 <= self.explore_budget <= 1.0:
            raise ValueError("explore_budget must be in [0, 1]")
        if not 0.0 < self.cold_prior < 1.0:
            raise ValueError("cold_prior must be in (0, 1)")

    def budget_slots(self, k: int) -> int:
        return int(self.explore_budget * k)


def posterior(p: np.ndarray, clicks: np.ndarray, imps: np.ndarray, n0: float) -> tuple[np.ndarray, np.ndarray]:
    """Beta posterior parameters (float64). Impressions below clicks are treated as equal to clicks."""
    p = np.asarray(p, dtype=np.float64)
    clicks = np.asarray(clicks, dtype=np.float64)
    fails = np.maximum(np.asarray(imps, dtype=np.float64) - clicks, 0.0)
    alpha = np.maximum(n0 * p + clicks, _MIN_PARAM)
    beta = np.maximum(n0 * (1.0 - p) + fails, _MIN_PARAM)
    return alpha, beta


@dataclass(slots=True)
class Decision:
    order: np.ndarray      # candidate positions, best first, length min(k, n)
    explored: np.ndarray   # bool per position in ``order``
    theta: np.ndarray      # the posterior draw per candidate (length n)
    mean: np.ndarray       # posterior mean per candidate (length n)


def thompson_topk(alpha: np.ndarray, beta: np.ndarray, k: int, budget_slots: int,
                  rng: np.random.Generator) -> Decision:
    """Top-k by one Thompson draw, with at most ``budget_slots`` explored items."""
    n = alpha.shape[0]
    theta = rng.beta(alpha, beta)
    mean = alpha / (alpha + beta)
    if n <= k:
        order = np.argsort(-theta, kind="stable")
        return Decision(order, np.zeros(n, dtype=bool), theta, mean)
    greedy = np.argpartition(-mean, k - 1)[:k]
    in_greedy = np.zeros(n, dtype=bool)
    in_greedy[greedy] = True
    top = np.argpartition(-theta, k - 1)[:k]
    explored_mask = ~in_greedy[top]
    if int(explored_mask.sum()) > budget_slots:
        exp_items = top[explored_mask]
        keep = exp_items[np.argsort(-theta[exp_items], kind="stable")[:budget_slots]]
        base = top[~explored_mask]
        in_top = np.zeros(n, dtype=bool)
        in_top[top] = True
        rest = greedy[~in_top[greedy]]
        fill = rest[np.argsort(-mean[rest], kind="stable")[: k - base.shape[0] - budget_slots]]
        top = np.concatenate((base, keep, fill))
    order = top[np.argsort(-theta[top], kind="stable")]
    return Decision(order, ~in_greedy[order], theta, mean)


def choose_arm(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator) -> int:
    """Plain Thompson choice of one arm (the classic multi-armed setting)."""
    return int(np.argmax(rng.beta(alpha, beta)))


def choose_arms(alpha: np.ndarray, beta: np.ndarray, n_decisions: int, rng: np.random.Generator) -> np.ndarray:
    """``n_decisions`` independent Thompson choices in one vectorised draw."""
    draws = rng.beta(alpha, beta, size=(n_decisions, alpha.shape[0]))
    return np.argmax(draws, axis=1)
