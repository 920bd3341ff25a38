"""Beta-Bernoulli Thompson sampling with the scorer's click probability as the prior.

For candidate i with model probability p_i, clicks c_i and impressions n_i (counted per slot over all
shoppers), the pooled posterior is
    alpha_i = n0 * p_i + c_i,   beta_i = n0 * (1 - p_i) + (n_i - c_i)
so a new item starts at the model's belief worth n0 pseudo-impressions and the data takes over as
impressions accumulate. Pooled over all shoppers, the data pull every shopper's mean towards the item's CTR
over everyone, which undoes the scorer's personal p as counts grow. Where the slot's counts also hold the
expected clicks E_i (the scorer's p over the item's impressions, each times the chance its position was looked
at, which the stream processor adds up from each impression event's ``prior``) and ``lift_prior`` s > 0, the
counts are read instead as evidence about a per-item lift of the scorer's p (how much better or worse the item
does than the scorer expected, on the shoppers it was shown to): lift_i = (s + c_i) / (s + E_i), a Gamma(s, s)
prior's posterior mean, and
    mean_i = p_i * lift_i,   alpha_i = mean_i * (n0 + n_i),   beta_i = (1 - mean_i) * (n0 + n_i)
so the shopper's own p stays in the ranking however many impressions accrue, and alpha + beta (the
concentration every tier's confidence reads) is n0 + n_i in both forms. Items without expected clicks (counts
written before the processor summed them) keep the pooled form, and so does ``lift_prior`` 0.

Ranking is by one posterior draw per candidate; an item is "explored" when it is in the sampled top-k but not
in the greedy top-k by posterior mean. The exploration budget caps how many of the k positions explored items
may take.

Draws come from a ``BetaSource``: anything with ``beta(alpha, beta) -> ndarray``. ``make_sampler`` gives
the compiled exact sampler (``shared.ranking._fastbeta``: xoshiro256++, ziggurat normals, Marsaglia-Tsang
gamma; ~22 ns per arm) when the extension was built, else NumPy's ``Generator`` (same distribution,
~95 ns per arm). A ``numpy.random.Generator`` is also accepted everywhere (the seeded reference).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass as plain_dataclass
from typing import Protocol

import numpy as np
from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

try:
    from strata.shared.ranking._fastbeta import FastBeta as _FastBeta
except ImportError:   # no C compiler at install time: NumPy's sampler
    _FastBeta = None

_MIN_PARAM = 1e-3

SAMPLER = "compiled" if _FastBeta is not None else "numpy"


class BetaSource(Protocol):
    def beta(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray: ...


if _FastBeta is not None:
    class CompiledBeta(_FastBeta):
        """Seeded exact Beta sampler in C. ``beta`` matches ``Generator.beta`` for 1-d float arrays;
        ``argmax`` is one Thompson decision without materialising the draws."""

        __slots__ = ()

        def beta(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
            alpha = np.ascontiguousarray(alpha, dtype=np.float64)
            out = np.empty(alpha.shape[0])
            self.fill(alpha, np.ascontiguousarray(beta, dtype=np.float64), out)
            return out
else:   # pragma: no cover - exercised only where the extension failed to build
    # mypy takes the class above as the only definition
    CompiledBeta = None     # type: ignore[misc, assignment]


def make_sampler(seed: int | None = None, backend: str = "auto") -> np.random.Generator | CompiledBeta:
    """The fastest exact Beta source available: ``backend`` "auto" | "compiled" | "numpy".

    ``seed=None`` seeds from the OS. "compiled" raises when the extension is not built.
    """
    if backend not in ("auto", "compiled", "numpy"):
        raise ValueError(f"backend must be auto, compiled or numpy, not {backend!r}")
    if backend == "numpy" or (backend == "auto" and CompiledBeta is None):
        return np.random.default_rng(seed)
    if CompiledBeta is None:
        raise RuntimeError("shared.ranking._fastbeta is not built (no C compiler at install time?)")
    return CompiledBeta(secrets.randbits(64) if seed is None else int(seed) & 0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class BanditConfig:
    """The bandit's settings: the one validated model, used as config section (``edge.bandit``) too."""

    n0: float = Field(default=1000.0, description="prior strength in pseudo-impressions (> 0): alpha + beta = n0 + "
                                                  "impressions; the pooled form is alpha = n0*p + clicks, beta = "
                                                  "n0*(1-p) + non-clicks (docs/ranking.md); docs/simulation.md has "
                                                  "the closed-loop figures behind the default")
    explore_budget: float = Field(default=0.2,
                                  description="largest share of the k positions explored items may take (0..1)")
    cold_prior: float = Field(default=0.02,
                              description="click prior for items the model does not know (0 < p < 1)")
    lift_prior: float = Field(default=20.0,
                              description="pseudo expected clicks behind each item's lift (clicks / expected "
                                          "clicks) of the scorer's p, where the counts hold expected clicks "
                                          "(>= 0; 0: the pooled posterior alpha = n0*p + clicks everywhere)")
    seed: int | None = Field(default=None, description="sampler seed; null seeds from the OS")

    @field_validator("lift_prior")
    @classmethod
    def _lift_prior(cls, v: float) -> float:
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"lift_prior must be a finite number >= 0: {v} is not")
        return v

    @field_validator("n0")
    @classmethod
    def _n0_positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"n0 must be > 0: {v} is not greater than 0")
        return v

    @field_validator("explore_budget")
    @classmethod
    def _budget_share(cls, v: float) -> float:
        if not v >= 0:
            raise ValueError(f"explore_budget must be in [0, 1]: {v} is not greater than or equal to 0")
        if not v <= 1:
            raise ValueError(f"explore_budget must be in [0, 1]: {v} is not less than or equal to 1")
        return v

    @field_validator("cold_prior")
    @classmethod
    def _prior_open_unit(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"cold_prior must be in (0, 1): {v} is not greater than 0 and less than 1")
        return v

    def budget_slots(self, k: int) -> int:
        return math.floor(self.explore_budget * k + 1e-9)   # 0.29 * 100 must give 29, not 28


def posterior(p: np.ndarray, clicks: np.ndarray | None, imps: np.ndarray | None,
              n0: float, expected: np.ndarray | None = None,
              lift_prior: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Beta posterior parameters (float64). Impressions below clicks are treated as equal to clicks.

    ``clicks=imps=None`` means no observations (the prior alone; same values as all-zero counts). With
    ``expected`` (expected clicks per candidate, aligned) and ``lift_prior`` > 0, candidates with expected
    clicks take the lift form (module docstring), the rest the pooled one.
    """
    prior = np.multiply(p, n0, dtype=np.float64)
    if clicks is None or imps is None:
        beta = n0 - prior
        np.maximum(prior, _MIN_PARAM, out=prior)
        np.maximum(beta, _MIN_PARAM, out=beta)
        return prior, beta
    lifted = None
    if expected is not None and lift_prior > 0:
        lifted = expected > 0
        if lifted.all():                     # the common case once the slot has traffic
            return _lift(p, clicks, imps, expected, n0, lift_prior)
        if not lifted.any():
            lifted = None
    fails = np.subtract(imps, clicks, dtype=np.float64)
    np.maximum(fails, 0.0, out=fails)
    beta = n0 - prior
    beta += fails
    alpha = prior
    alpha += clicks
    if lifted is not None:
        assert expected is not None
        a_l, b_l = _lift(p, clicks, imps, expected, n0, lift_prior)
        np.copyto(alpha, a_l, where=lifted)
        np.copyto(beta, b_l, where=lifted)
    np.maximum(alpha, _MIN_PARAM, out=alpha)
    np.maximum(beta, _MIN_PARAM, out=beta)
    return alpha, beta


_MAX_MEAN = 1.0 - 1e-6


def _lift(p: np.ndarray, clicks: np.ndarray, imps: np.ndarray, expected: np.ndarray, n0: float,
          s: float) -> tuple[np.ndarray, np.ndarray]:
    """The lift form for every candidate: mean p * (s + c) / (s + E) (at most just below 1), concentration
    n0 + max(n, c). Few whole-array NumPy calls: on the hot path each costs about a microsecond."""
    mean = np.add(clicks, s, dtype=np.float64)
    mean *= p
    mean /= np.add(expected, s, dtype=np.float64)
    np.minimum(mean, _MAX_MEAN, out=mean)
    strength = np.maximum(imps, clicks, dtype=np.float64)
    strength += n0
    alpha = mean
    alpha *= strength
    beta = strength
    beta -= alpha
    np.maximum(alpha, _MIN_PARAM, out=alpha)
    np.maximum(beta, _MIN_PARAM, out=beta)
    return alpha, beta


@plain_dataclass(slots=True)
class Decision:
    order: np.ndarray      # candidate positions, best first, length min(k, n)
    explored: np.ndarray   # bool per position in ``order``
    theta: np.ndarray      # the posterior draw per candidate (length n)
    mean: np.ndarray       # posterior mean per candidate (length n)
    margin: float          # k-th minus (k+1)-th largest posterior mean; 1.0 when n <= k
    kth: float = -np.inf   # the k-th largest posterior mean: "greedy" is ``mean >= kth``
    ranked: np.ndarray | None = None   # every position by its draw, best first, when it was computed


FULL_SORT_MAX = 256        # up to this many candidates one sort is cheaper than partitions (and is reusable)


def thompson_topk(alpha: np.ndarray, beta: np.ndarray, k: int, budget_slots: int,
                  rng: BetaSource) -> Decision:
    """Top-k by one Thompson draw, with at most ``budget_slots`` explored items (``select_topk``)."""
    theta = rng.beta(alpha, beta)
    return select_topk(theta, alpha / (alpha + beta), k, budget_slots)


def select_topk(theta: np.ndarray, mean: np.ndarray, k: int, budget_slots: int) -> Decision:
    """Top-k by the draws ``theta``, with at most ``budget_slots`` explored items.

    "Greedy" means a posterior mean at or above the k-th largest mean (ties at the boundary count as
    greedy); "explored" is everything else. When the draw puts more than ``budget_slots`` explored items
    in the top k, the answer is the best ``k - budget_slots`` greedy items and the best ``budget_slots``
    explored items, both by their draws. One partition of the means gives the threshold and the margin;
    up to ``FULL_SORT_MAX`` candidates one stable sort of the draws gives the top k (and ``ranked``, which a
    diversity walk reuses), beyond it a partition does. Few NumPy calls: on the edge's hot path each costs
    about a microsecond whatever its size.
    """
    n = theta.shape[0]
    neg = -theta
    if n <= k:
        order = neg.argsort(kind="stable")
        return Decision(order, np.zeros(n, dtype=bool), theta, mean, 1.0, -np.inf, order)
    part = mean.copy()
    part.partition((n - k - 1, n - k))
    kth = part[n - k]
    ranked = None
    if n <= FULL_SORT_MAX:
        ranked = neg.argsort(kind="stable")
        top = ranked[:k]
    else:
        top = neg.argpartition(k - 1)[:k]
    explored = mean[top] < kth
    if np.count_nonzero(explored) > budget_slots:
        greedy = mean >= kth
        g = k - budget_slots
        top_g = np.argpartition(np.where(greedy, neg, 1.0), g - 1)[:g]      # draws are in [0, 1]
        if budget_slots:
            top_e = np.argpartition(np.where(greedy, 1.0, neg), budget_slots - 1)[:budget_slots]
            top = np.concatenate((top_g, top_e))
        else:
            top = top_g
        order = top[neg[top].argsort(kind="stable")]
        return Decision(order, ~greedy[order], theta, mean, float(kth - part[n - k - 1]), float(kth), ranked)
    if ranked is None:
        by_draw = neg[top].argsort(kind="stable")
        top = top[by_draw]
        explored = explored[by_draw]
    return Decision(top, explored, theta, mean, float(kth - part[n - k - 1]), float(kth), ranked)


def greedy_mask(mean: np.ndarray, k: int) -> np.ndarray:
    """Greedy (not explored) per candidate: posterior mean at or above the k-th largest mean."""
    n = mean.shape[0]
    if n <= k:
        return np.ones(n, dtype=bool)
    return mean >= np.partition(mean, n - k)[n - k]


def choose_arm(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator | CompiledBeta) -> int:
    """Plain Thompson choice of one arm (the classic multi-armed setting).

    ``alpha``/``beta`` as float64 1-d arrays take the compiled path without a copy."""
    if isinstance(rng, np.random.Generator):
        return int(np.argmax(rng.beta(alpha, beta)))
    try:
        return rng.argmax(alpha, beta)
    except (TypeError, ValueError):   # not contiguous float64 (bad values raise again below)
        return rng.argmax(np.ascontiguousarray(alpha, dtype=np.float64),
                          np.ascontiguousarray(beta, dtype=np.float64))


def choose_arms(alpha: np.ndarray, beta: np.ndarray, n_decisions: int,
                rng: np.random.Generator | CompiledBeta) -> np.ndarray:
    """``n_decisions`` independent Thompson choices in one call."""
    if isinstance(rng, np.random.Generator):
        # the C extension has no stubs: mypy keeps "a CompiledBeta that is also a Generator" in this branch
        draws = rng.beta(alpha, beta, size=(n_decisions, alpha.shape[0]))    # type: ignore[call-arg]
        return np.argmax(draws, axis=1)
    out = np.empty(n_decisions, dtype=np.int64)
    rng.argmax_into(np.ascontiguousarray(alpha, dtype=np.float64),
                    np.ascontiguousarray(beta, dtype=np.float64), out)
    return out
