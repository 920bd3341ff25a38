"""Confidence of an edge answer and the route the router would take."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strata.shared.ranking.confidence import (
    ConfidenceConfig,
    Signals,
    confidence,
    margin_at_k,
    route_by_confidence,
)

CFG = ConfidenceConfig()


def sig(session_known: bool = True, age: float | None = 10.0, concentration: float = 100.0,
        margin: float = 0.01, known_share: float = 0.5) -> Signals:
    return Signals(session_known, age, concentration, margin, known_share)


def test_exact_value_hand_computed() -> None:
    # session 1, concentration 1 - e^-1, margin 0.01 / 0.02 = 0.5, known 0.5; weights sum to 1
    expected = 0.25 * 1.0 + 0.25 * (1 - math.exp(-1)) + 0.2 * 0.5 + 0.3 * 0.5
    assert confidence(sig(), CFG) == round(expected, 4) == 0.658


@pytest.mark.parametrize(("known", "age", "value"), [
    (True, 10.0, 0.658),      # fresh: session term 1
    (True, None, 0.658),      # age unknown counts as fresh
    (True, 1800.0, 0.658),    # exactly fresh_seconds is still fresh
    (True, 1801.0, 0.533),    # stale: session term 0.5
    (False, None, 0.408),     # no session: 0
])
def test_session_term_fresh_stale_unknown(known: bool, age: float | None, value: float) -> None:
    assert confidence(sig(session_known=known, age=age), CFG) == value


def test_monotone_in_concentration() -> None:
    values = [confidence(sig(concentration=c), CFG) for c in (0, 10, 50, 100, 300, 1000, 10_000)]
    assert values == sorted(values) and values[0] < values[-1]
    assert values[0] == round(0.25 + 0.2 * 0.5 + 0.3 * 0.5, 4)          # term 0
    assert values[-1] == pytest.approx(0.25 + 0.25 + 0.1 + 0.15, abs=1e-4)   # term -> 1


def test_monotone_in_margin_and_saturates() -> None:
    values = [confidence(sig(margin=m), CFG) for m in (0.0, 0.005, 0.01, 0.02, 0.5)]
    assert values == sorted(values) and values[0] < values[-1]
    assert values[3] == values[4]   # saturates at margin_scale


def test_monotone_in_known_share() -> None:
    values = [confidence(sig(known_share=s), CFG) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert values[4] - values[0] == pytest.approx(0.3, abs=1e-4)


def test_out_of_range_signals_are_clamped() -> None:
    assert confidence(sig(concentration=-5.0), CFG) == confidence(sig(concentration=0.0), CFG)
    assert confidence(sig(margin=-1.0), CFG) == confidence(sig(margin=0.0), CFG)
    assert confidence(sig(known_share=3.0), CFG) == confidence(sig(known_share=1.0), CFG)
    assert confidence(sig(known_share=-1.0), CFG) == confidence(sig(known_share=0.0), CFG)


def test_extremes_are_zero_and_one() -> None:
    assert confidence(sig(False, None, 0.0, 0.0, 0.0), CFG) == 0.0
    assert confidence(sig(True, 0.0, 1e9, 1.0, 1.0), CFG) == 1.0


def test_negative_or_all_zero_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0 and not all zero"):
        ConfidenceConfig(w_session=0.25, w_concentration=0.25, w_margin=0.2, w_known=-5.0)
    with pytest.raises(ValueError, match="must be >= 0 and not all zero"):
        ConfidenceConfig(w_session=0.0, w_concentration=0.0, w_margin=0.0, w_known=0.0)


def test_weights_are_normalised() -> None:
    doubled = ConfidenceConfig(w_session=0.5, w_concentration=0.5, w_margin=0.4, w_known=0.6)
    assert confidence(sig(), doubled) == confidence(sig(), CFG)


def test_rounded_to_four_places() -> None:
    c = confidence(sig(concentration=37.0, margin=0.0033, known_share=0.123), CFG)
    assert c == round(c, 4)


def test_margin_at_k() -> None:
    mean = np.array([0.1, 0.9, 0.5, 0.6])
    assert margin_at_k(mean, 1) == pytest.approx(0.3)
    assert margin_at_k(mean, 2) == pytest.approx(0.1)
    assert margin_at_k(mean, 4) == 1.0
    assert margin_at_k(mean, 10) == 1.0


# ---- route_by_confidence -----------------------------------------------------------------------------------

def test_route_confident_stays_at_edge() -> None:
    assert route_by_confidence(0.6, sig(), False, CFG) == ("edge", ["confident"])
    assert route_by_confidence(0.95, sig(False, None, known_share=0.2), False, CFG) == ("edge", ["confident"])


def test_route_explain_goes_to_origin_even_when_confident() -> None:
    tier, reasons = route_by_confidence(0.99, sig(known_share=1.0), True, CFG)
    assert tier == "origin"
    assert reasons == ["explain_requested"]


def test_route_fresh_session_all_known_low_confidence_goes_streaming() -> None:
    tier, reasons = route_by_confidence(0.4, sig(age=60.0, known_share=1.0), False, CFG)
    assert (tier, reasons) == ("streaming", ["low_confidence", "active_session"])
    assert route_by_confidence(0.4, sig(age=None, known_share=1.0), False, CFG)[0] == "streaming"


def test_route_stale_session_goes_to_origin() -> None:
    assert route_by_confidence(0.4, sig(age=5000.0, known_share=1.0), False, CFG) == ("origin", ["low_confidence"])


def test_route_no_session_goes_to_origin() -> None:
    tier, reasons = route_by_confidence(0.3, sig(False, None, known_share=1.0), False, CFG)
    assert (tier, reasons) == ("origin", ["low_confidence", "no_session_vector"])


def test_route_cold_items_go_to_origin() -> None:
    tier, reasons = route_by_confidence(0.3, sig(age=5.0, known_share=0.9), False, CFG)
    assert (tier, reasons) == ("origin", ["low_confidence", "cold_items"])


def test_route_all_reasons_together() -> None:
    tier, reasons = route_by_confidence(0.1, sig(False, None, known_share=0.0), True, CFG)
    assert tier == "origin"
    assert reasons == ["explain_requested", "low_confidence", "no_session_vector", "cold_items"]


def test_route_threshold_from_config() -> None:
    strict = ConfidenceConfig(t_edge=0.9)
    assert route_by_confidence(0.8, sig(known_share=1.0), False, strict)[0] == "streaming"
    assert route_by_confidence(0.9, sig(known_share=1.0), False, strict)[0] == "edge"


def _ranked(n0: float, imps: np.ndarray, fill_imps: np.ndarray | None = None):
    """A ranked request's state as the posterior stage leaves it: alpha + beta = n0 + impressions per item."""
    from types import SimpleNamespace

    strength = n0 + imps.astype(np.float64)
    fill = None if fill_imps is None else (np.full(fill_imps.shape, n0 * 0.1), n0 * 0.9 + fill_imps)
    return SimpleNamespace(rows=np.arange(imps.size + 5), picked=np.arange(imps.size), strength=strength,
                           fill_post=fill, vec=None, vec_age_s=None, margin=0.01, n_known=imps.size,
                           model=SimpleNamespace(ranker=SimpleNamespace(bandit=SimpleNamespace(n0=n0))))


@pytest.mark.parametrize("fill", [None, np.array([0.0, 7.0])])
def test_the_bandits_prior_strength_does_not_move_the_confidence(fill) -> None:
    """The concentration input is ``concentration_prior`` plus the impressions observed: the same counts give
    the same confidence and route whatever n0 is (at n0 = concentration_prior it is alpha + beta, as before)."""
    from strata.shared.ranking.stages.confidence import ConfidenceStage

    imps = np.array([0.0, 10.0, 40.0, 250.0])
    out = {}
    for n0 in (50.0, 1000.0, 1e6):
        ctx = _ranked(n0, imps, fill)
        ConfidenceStage(CFG).run(ctx)
        out[n0] = (ctx.signals.concentration, ctx.confidence)
    shown = imps.size + (0 if fill is None else fill.size)
    observed = (imps.sum() + (0 if fill is None else fill.sum())) / shown
    assert out[50.0][1] == out[1000.0][1] == out[1e6][1]
    assert out[1000.0][0] == pytest.approx(out[50.0][0]) and out[1e6][0] == pytest.approx(out[50.0][0])
    assert out[50.0][0] == pytest.approx(CFG.concentration_prior + observed)
    ctx = _ranked(50.0, imps, fill)                     # the default reference equals the old n0: alpha + beta
    ConfidenceStage(CFG).run(ctx)
    total = ctx.strength.sum() + (0 if fill is None else ctx.fill_post[0].sum() + ctx.fill_post[1].sum())
    assert ctx.signals.concentration == pytest.approx(total / shown)
