"""From recorded pages to the report: per-policy metrics, learning curves, the threshold frontier and the
edge confidence's reliability. Pure functions of the records (unit-tested on hand-made ones).

- expected CTR: the mean, over pages, of the mean true click probability of what was shown (low variance:
  no click noise). realised CTR: clicks / items shown (with the shoppers' position bias).
- NDCG@10: DCG of the shown ranking's true probabilities over the oracle's DCG (the best k servable items).
- regret: mean over pages of (oracle's expected CTR - the page's expected CTR).
- frontier: for each ``t_edge`` of a sweep, on the probe's pages, escalate those with confidence < t_edge to
  the tier the router's rule picks (tier 2 for a session with a vector, else the origin; the configured
  rule, ``shared.ranking.confidence.route_by_confidence``) and take that tier's answer, else the edge's;
  next to it, the same share escalated at random (its expectation: (1 - s) * edge + s * upper, exact).
- reliability: per confidence bucket, the edge's expected CTR over the origin's on the same pages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from strata.deploy.simulation.shopper import ProbeStep, Step
from strata.shared.ranking.confidence import ConfidenceConfig, Signals, route_by_confidence

TIERS = ("edge", "streaming", "origin")
CURVE_POINTS = 10
SWEEP = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21).tolist())
BUCKETS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values.size else None


def policy_metrics(steps: Sequence[Step], duration_s: float, cache_hit_ratio: float | None) -> dict:
    """The JSON contract's per-policy object."""
    n = len(steps)
    ectr = np.array([s.expected_ctr for s in steps])
    lat = np.array([s.latency_ms for s in steps if s.latency_ms is not None and not s.error])
    shown = sum(s.shown for s in steps)
    tiers = [s.tier for s in steps]
    share = {t: round(tiers.count(t) / n, 4) if n else 0.0 for t in TIERS}
    return {
        "expected_ctr": round(float(ectr.mean()), 5) if n else None,
        "realized_ctr": round(sum(s.clicks for s in steps) / shown, 5) if shown else None,
        "ndcg_at_10": round(float(np.mean([s.ndcg for s in steps])), 5) if n else None,
        "regret": round(float(np.mean([s.oracle_ctr - s.expected_ctr for s in steps])), 5) if n else None,
        "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
        "tier_share": share,
        "degraded_share": round(sum(s.degraded for s in steps) / n, 4) if n else 0.0,
        "requests": n,
        "edge_cache_hit_ratio": None if cache_hit_ratio is None else round(cache_hit_ratio, 4),
        "learning_curve": learning_curve(steps, duration_s),
    }


def learning_curve(steps: Sequence[Step], duration_s: float, points: int = CURVE_POINTS) -> list[list[float]]:
    """[[t_s, expected CTR], ...]: the mean over pages asked in each of ``points`` equal windows (t_s: the
    window's middle); windows with no page are left out."""
    if not steps or duration_s <= 0:
        return []
    width = duration_s / points
    t = np.array([s.t_s for s in steps])
    e = np.array([s.expected_ctr for s in steps])
    window = np.minimum((t / width).astype(int), points - 1)
    out = []
    for w in range(points):
        sel = window == w
        if sel.any():
            out.append([round((w + 0.5) * width, 2), round(float(e[sel].mean()), 5)])
    return out


def upper_tier(p: ProbeStep, cfg: ConfidenceConfig) -> str:
    """The tier the router's rule sends a non-confident page to (t_edge = 1 forces the question)."""
    sig = Signals(session_known=p.session_known, session_age_s=0.0 if p.session_known else None,
                  concentration=0.0, margin=0.0, known_share=1.0)
    tier, _ = route_by_confidence(0.0, sig, False, dataclasses.replace(cfg, t_edge=1.0))
    return tier


def _upper_ctr(p: ProbeStep, cfg: ConfidenceConfig, origin_only: bool = False) -> float | None:
    tier = "origin" if origin_only else upper_tier(p, cfg)
    value = p.streaming_ctr if tier == "streaming" else p.origin_ctr
    return value if value is not None else p.origin_ctr


def frontier(probes: Sequence[ProbeStep], t_edge: float, cfg: ConfidenceConfig = ConfidenceConfig(),
             sweep: Sequence[float] = SWEEP, origin_only: bool = False) -> list[dict]:
    """The contract's ``frontier``: one point per threshold of ``sweep`` plus the configured ``t_edge``.
    ``origin_only``: every escalation goes to the origin (a what-if next to the router's rule)."""
    rows = [(p.confidence, p.edge_ctr, u) for p in probes if (u := _upper_ctr(p, cfg, origin_only)) is not None]
    if not rows:
        return []
    conf, edge, upper = (np.array(c) for c in zip(*rows, strict=True))
    out = []
    for t in sorted({*sweep, round(t_edge, 4)}):
        esc = conf < t
        s = float(esc.mean())
        out.append({"t_edge": t, "escalation_share": round(s, 4),
                    "expected_ctr": round(float(np.where(esc, upper, edge).mean()), 5),
                    "random_expected_ctr": round(float((1 - s) * edge.mean() + s * upper.mean()), 5)})
    return out


def reliability(probes: Sequence[ProbeStep], buckets: Sequence[float] = BUCKETS) -> list[dict]:
    """Per confidence bucket: pages, the edge's and the origin's mean expected CTR and their ratio."""
    rows = [(p.confidence, p.edge_ctr, p.origin_ctr) for p in probes if p.origin_ctr is not None]
    out = []
    if not rows:
        return out
    conf, edge, origin = (np.array(c) for c in zip(*rows, strict=True))
    for lo, hi in zip(buckets[:-1], buckets[1:], strict=True):
        sel = (conf >= lo) & (conf < hi)
        n = int(sel.sum())
        e = float(edge[sel].mean()) if n else None
        o = float(origin[sel].mean()) if n else None
        out.append({"confidence": f"{lo:.1f}-{min(hi, 1.0):.1f}", "pages": n,
                    "edge_ctr": None if e is None else round(e, 5), "origin_ctr": None if o is None else round(o, 5),
                    "edge_over_origin": None if not n or not o else round(e / o, 3)})
    return out


def by_session_state(steps: Sequence[Step]) -> dict:
    """Expected CTR of pages of sessions without clicks yet (no session vector: cold) and with (warm)."""
    out = {}
    for name, warm in (("cold", False), ("warm", True)):
        e = [s.expected_ctr for s in steps if s.warm == warm]
        out[name] = {"pages": len(e), "expected_ctr": round(float(np.mean(e)), 5) if e else None}
    return out


def server_p95(steps: Sequence[Step]) -> float | None:
    """p95 of the answers' own server time (``timing.server_us``), next to the client's."""
    return _pct(np.array([s.server_ms for s in steps if s.server_ms is not None]), 95)
