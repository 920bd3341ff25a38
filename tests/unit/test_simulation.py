"""The simulation's truth and metrics on small hand-made inputs (``deploy.simulation``)."""

from __future__ import annotations

import numpy as np
import pytest

from strata.deploy.simulation import metrics as M
from strata.deploy.simulation.report import checks
from strata.deploy.simulation.shopper import ProbeStep, Step
from strata.deploy.simulation.truth import Truth, Visit, dcg, examination
from strata.model_export.simulate import true_logit
from strata.model_export.world import generate_world, new_users
from strata.shared.ranking.confidence import ConfidenceConfig


@pytest.fixture(scope="module")
def truth() -> Truth:
    world = generate_world(seed=3, n_items=300, n_users=60, n_sessions=400)
    cat = world.catalog
    servable = ~cat.age_restricted.astype(bool)
    return Truth(world, new_users(world, 8, seed=1), {str(i): r for r, i in enumerate(cat.item_id)}, servable,
                 cat.category.astype(np.int64), 3, {"default": [str(i) for i in cat.item_id[:50]]}, "1.0.0")


def test_new_users_come_from_the_world_but_are_not_its_users(truth: Truth) -> None:
    world, shoppers = truth.world, truth.shoppers
    assert not set(shoppers.user_id.tolist()) & set(world.users.user_id.tolist())
    assert np.allclose(np.linalg.norm(shoppers.taste, axis=1), 1.0, atol=1e-5)
    # the same distribution: each shopper's taste is closest to the centroid of its favourite category
    # or second category for most of them (the world builds tastes around those centroids)
    many = new_users(world, 400, seed=2)
    nearest = np.argmax(many.taste @ world.centroids.T, axis=1)
    assert (nearest == many.favourite).mean() > 0.4
    assert not np.allclose(new_users(world, 8, seed=1).taste, new_users(world, 8, seed=9).taste)


def test_p_true_is_the_worlds_click_model(truth: Truth) -> None:
    visit = Visit("s", channel=1, device=1, hour=20, steps=3)
    rows = np.array([0, 5, 17, 42])
    logit = true_logit(truth.world.catalog, truth.shoppers.taste[2][None], np.zeros((1, 12), np.float32),
                       rows[None], np.array([1]), np.array([1]), np.array([20]))[0]
    assert np.allclose(truth.p_true(2, visit, rows), 1 / (1 + np.exp(-logit)))
    before = truth.p_true(2, visit, rows)
    truth.click(visit, np.array([5]), np.array([True]))          # the session's intent moves towards item 5
    assert visit.clicked == 1 and truth.p_true(2, visit, np.array([5]))[0] > before[1]


def test_oracle_is_the_best_servable_k_under_the_category_cap(truth: Truth) -> None:
    visit = Visit("s", channel=0, device=0, hour=12, steps=1)
    best = truth.oracle(0, visit, 10)
    p = truth.p_true(0, visit, np.arange(truth.n_items))
    assert best.shape == (10,) and np.all(np.diff(best) <= 0)
    assert best[0] == p[truth.servable].max()
    top = np.flatnonzero(np.isin(p, best))
    assert truth.servable[top].all()
    assert np.bincount(truth.category[top]).max() <= 3


def test_position_bias_and_dcg() -> None:
    e = examination(10)
    assert e[0] == 1.0 and np.all(np.diff(e) < 0)
    assert dcg(np.array([0.5, 0.1])) > dcg(np.array([0.1, 0.5]))


def _step(policy: str, t: float, ectr: float, oracle: float = 0.5, clicks: int = 1, tier: str | None = "edge",
          ms: float | None = 1.0) -> Step:
    return Step(policy, t, ms, tier, False, False, ectr, clicks, 10, ectr / oracle, oracle)


def test_policy_metrics_follow_their_definitions() -> None:
    steps = [_step("edge", 1, 0.2, clicks=2, ms=1.0), _step("edge", 9, 0.4, clicks=0, tier="origin", ms=3.0)]
    m = M.policy_metrics(steps, 10.0, 0.8)
    assert m["expected_ctr"] == pytest.approx(0.3)
    assert m["realized_ctr"] == pytest.approx(2 / 20)
    assert m["regret"] == pytest.approx(0.2)
    assert m["tier_share"] == {"edge": 0.5, "streaming": 0.0, "origin": 0.5}
    assert m["p50_ms"] == pytest.approx(2.0) and m["requests"] == 2 and m["edge_cache_hit_ratio"] == 0.8
    assert m["learning_curve"] == [[1.5, 0.2], [9.5, 0.4]]     # windows 1 s wide, by their middle


def _probes(conf_signal: bool, n: int = 400) -> list[ProbeStep]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        conf = float(rng.uniform(0, 1))
        edge = 0.3
        # with signal: the origin beats the edge where the edge is unsure, and loses where it is sure
        origin = (0.45 if conf < 0.5 else 0.25) if conf_signal else float(rng.choice([0.45, 0.25]))
        out.append(ProbeStep(0.0, conf, False, "origin", edge, origin, None))
    return out


def test_frontier_lies_above_random_when_confidence_carries_signal() -> None:
    cfg = ConfidenceConfig(t_edge=0.5)
    signal = {p["t_edge"]: p for p in M.frontier(_probes(True), 0.5, cfg)}
    at = signal[0.5]
    assert 0.4 < at["escalation_share"] < 0.6
    assert at["expected_ctr"] > at["random_expected_ctr"] + 0.03
    assert signal[0.0]["escalation_share"] == 0.0 and signal[0.0]["expected_ctr"] == pytest.approx(0.3)
    noise = {p["t_edge"]: p for p in M.frontier(_probes(False), 0.5, cfg)}[0.5]
    assert abs(noise["expected_ctr"] - noise["random_expected_ctr"]) < 0.02


def test_frontier_takes_tier2_for_sessions_with_a_vector() -> None:
    known = ProbeStep(0.0, 0.1, True, "streaming", 0.2, 0.9, 0.4)
    cold = ProbeStep(0.0, 0.1, False, "origin", 0.2, 0.9, None)
    cfg = ConfidenceConfig()
    assert M.upper_tier(known, cfg) == "streaming" and M.upper_tier(cold, cfg) == "origin"
    point = {p["t_edge"]: p for p in M.frontier([known, cold], 0.6, cfg)}[1.0]
    assert point["expected_ctr"] == pytest.approx((0.4 + 0.9) / 2)
    to_origin = {p["t_edge"]: p for p in M.frontier([known, cold], 0.6, cfg, origin_only=True)}[1.0]
    assert to_origin["expected_ctr"] == pytest.approx(0.9)


def test_reliability_buckets_edge_over_origin() -> None:
    rows = {r["confidence"]: r for r in M.reliability(_probes(True))}
    assert rows["0.0-0.2"]["edge_over_origin"] == pytest.approx(0.3 / 0.45, abs=1e-3)
    assert rows["0.8-0.9"]["edge_over_origin"] == pytest.approx(0.3 / 0.25, abs=1e-3)


def test_checks_read_the_targets_from_the_report() -> None:
    base = {"tier_share": {"edge": 0.7, "streaming": 0.1, "origin": 0.2}, "p95_ms": 5.0, "learning_curve": []}
    report = {"policies": {"routed": {**base, "expected_ctr": 0.30}, "edge": {**base, "expected_ctr": 0.25},
                           "origin": {**base, "expected_ctr": 0.31, "p95_ms": 20.0}},
              "frontier": [{"t_edge": 0.6, "escalation_share": 0.3, "expected_ctr": 0.3, "random_expected_ctr": 0.28}],
              "t_edge": 0.6}
    got = {what: met for what, met, _ in checks(report)}
    assert got["routed expected CTR >= 0.98x the best single tier"] is False     # 0.30 / 0.31 = 0.968
    assert got["routed escalates <= 35% of requests"] is True
    assert got["routed p95 <= 0.5x origin's"] is True
    assert got["at t_edge 0.6: by confidence beats the same share at random"] is True
