"""Confidence of an answer and where the router would send the request.

Pure functions so every tier computes them identically. Confidence is a weighted mean of four
terms in [0, 1]: session known and fresh, the evidence behind the top-k (impressions observed, over a prior
reference: ``concentration_prior``),
score margin at position k, and the share of candidates the edge knows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class ConfidenceConfig:
    """Weights, scales and the edge threshold: the one validated model, also the ``edge.confidence``
    config section."""

    w_session: float = Field(default=0.25, description="weight of 'the session is known and fresh' "
                                                       "(weights >= 0, not all 0)")
    w_concentration: float = Field(default=0.25,
                                   description="weight of the concentration input (concentration_prior + impressions "
                                               "observed on the answer's items)")
    w_margin: float = Field(default=0.2, description="weight of the score margin at position k")
    w_known: float = Field(default=0.3, description="weight of the share of candidates the model knows")
    concentration_scale: float = Field(default=100.0, gt=0, description="concentration at which its term "
                                                                        "reaches 1 - 1/e")
    concentration_prior: float = Field(default=50.0, ge=0,
                                       description="where the concentration starts: the input is this plus the "
                                                   "mean impressions observed per item of the answer (alpha + "
                                                   "beta - the bandit's n0), so the bandit's prior strength n0 "
                                                   "does not move routing")
    margin_scale: float = Field(default=0.02, gt=0, description="margin of posterior means at which the "
                                                                "margin term saturates")
    fresh_seconds: float = Field(default=1800.0, gt=0,
                                 description="a session vector older than this counts as stale")
    t_edge: float = Field(default=0.6, ge=0, le=1, description="at or above this (and no explain) the edge "
                                                               "answers; below, route_tier names an upper tier")

    def __post_init__(self) -> None:
        weights = (self.w_session, self.w_concentration, self.w_margin, self.w_known)
        if not all(w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("confidence weights must be >= 0 and not all zero")


@dataclass(slots=True)
class Signals:
    session_known: bool
    session_age_s: float | None
    concentration: float
    margin: float
    known_share: float


def margin_at_k(mean: np.ndarray, k: int) -> float:
    """Gap between the k-th and (k+1)-th largest posterior means; 1.0 when there is no (k+1)-th."""
    n = mean.shape[0]
    if n <= k:
        return 1.0
    part = np.partition(mean, (n - k - 1, n - k))
    return float(part[n - k] - part[n - k - 1])


def confidence(sig: Signals, cfg: ConfidenceConfig) -> float:
    if sig.session_known:
        age = sig.session_age_s if sig.session_age_s is not None else 0.0
        session = 1.0 if age <= cfg.fresh_seconds else 0.5
    else:
        session = 0.0
    conc = 1.0 - math.exp(-max(sig.concentration, 0.0) / cfg.concentration_scale)
    margin = min(max(sig.margin, 0.0) / cfg.margin_scale, 1.0)
    known = min(max(sig.known_share, 0.0), 1.0)
    total = cfg.w_session + cfg.w_concentration + cfg.w_margin + cfg.w_known
    c = (cfg.w_session * session + cfg.w_concentration * conc + cfg.w_margin * margin
         + cfg.w_known * known) / total
    return round(min(max(c, 0.0), 1.0), 4)


def route_by_confidence(conf: float, sig: Signals, explain: bool, cfg: ConfidenceConfig) -> tuple[str, list[str]]:
    """(tier, reasons) per the blueprint: confident edge answers stay at the edge; an active, fresh
    session goes to tier 2; explain, new users and cold items go to tier 3."""
    if not explain and conf >= cfg.t_edge:
        return "edge", ["confident"]
    reasons: list[str] = []
    if explain:
        reasons.append("explain_requested")
    if conf < cfg.t_edge:
        reasons.append("low_confidence")
    if not sig.session_known:
        reasons.append("no_session_vector")
    if sig.known_share < 1.0:
        reasons.append("cold_items")
    fresh = sig.session_known and (sig.session_age_s is None or sig.session_age_s <= cfg.fresh_seconds)
    if not explain and fresh and sig.known_share >= 1.0:
        return "streaming", reasons + ["active_session"]
    return "origin", reasons
