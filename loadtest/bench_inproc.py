"""In-process decision latency: one decision per request, no HTTP, timed with perf_counter_ns.

Requests are parsed before timing and every one has a never-seen session id (cache misses only), so
the figure is the edge's ranking stages: candidates + guardrails + features + ONNX + Thompson + top-k
with the exploration and diversity caps + confidence. Guardrails run as served (age not verified: the
age-restricted share of the candidates is removed); a second edge row turns them off (age verified,
diversity cap at k) to show their cost. The naive ranker the baselines use (no guardrails) is timed on
the same requests for comparison.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from strata.loadtest.payloads import Catalog, PayloadSpec, unique_mix
from strata.shared.contracts.api import MAX_K, RecommendRequest, parse_recommend

logger = logging.getLogger(__name__)


def build_requests(catalog: Catalog, n_candidates: int, n: int) -> list[RecommendRequest]:
    bodies = unique_mix(catalog, n, PayloadSpec(n_candidates=n_candidates), marker=False)
    return [parse_recommend(b) for b in bodies]


def time_calls(call: Callable[[RecommendRequest], object], requests: list[RecommendRequest],
               iterations: int, warmup: int) -> dict[str, float]:
    """p50/p99/mean in microseconds over ``iterations`` calls, cycling through ``requests``."""
    n = len(requests)
    for i in range(warmup):
        call(requests[i % n])
    lat = np.empty(iterations, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(iterations):
        req = requests[i % n]
        t0 = clock()
        call(req)
        lat[i] = clock() - t0
    p50, p99 = np.percentile(lat, [50, 99]) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "mean_us": float(lat.mean() / 1e3),
            "iterations": iterations}


def edge_ranker(registry: str, guardrails: dict | None = None) -> Callable[[RecommendRequest], object]:
    """The edge's ranking stages (candidates -> guardrails -> rank -> select -> confidence) on the CURRENT
    bundle, as ``RecommendHandler.decide`` runs them (store off, no caches, no codec)."""
    from strata.edge.node import EdgeNode
    from strata.shared.config import load_settings

    settings = load_settings(None, edge={"registry": registry, "store": {"url": "none"}},
                             **({"guardrails": guardrails} if guardrails is not None else {}))
    node = EdgeNode(settings)
    node.load_model()
    return node.recommend.decide


def naive_ranker(registry: str) -> Callable[[RecommendRequest], object]:
    from strata.loadtest.baselines.naive_ranker import NaiveRanker

    ranker = NaiveRanker(registry)

    def call(req: RecommendRequest) -> object:
        ctx = req.context
        return ranker.rank(req.candidates, ctx.channel, ctx.device, ctx.hour, req.k)

    return call


def run(registry: str, catalog: Catalog, iterations: int, warmup: int) -> dict:
    """Edge and naive ranker at 100 and 1000 candidates (1000-candidate runs use a fifth of the count)."""
    from strata.shared.serving.gc_tuning import tune_gc

    # The edge server runs with this GC configuration; both rankers share the process, so both get it.
    tune_gc()
    out: dict = {"gc": "frozen after load, thresholds (20000, 50, 100) for both rankers"}
    # (name, call, age_verified of its requests)
    rankers: list[tuple[str, Callable[[RecommendRequest], object], bool]] = []
    try:
        rankers.append(("inproc", edge_ranker(registry), False))
        # same stages with nothing to remove or reorder: the guardrails' cost is the difference
        rankers.append(("inproc_noguard", edge_ranker(registry, {"max_per_category": MAX_K}), True))
    except Exception as exc:  # the table then says n/a; the error is kept in the JSON
        logger.error("edge ranker unavailable: %s", exc)
        out["inproc_error"] = f"{type(exc).__name__}: {exc}"
    rankers.append(("naive_inproc", naive_ranker(registry), False))
    for n_cand, iters in ((100, iterations), (1000, max(iterations // 5, 100))):
        reqs = build_requests(catalog, n_cand, min(iters, 2000))
        verified = [replace(r, context=replace(r.context, age_verified=True)) for r in reqs]
        for name, call, age_verified in rankers:
            r = time_calls(call, verified if age_verified else reqs, iters, warmup)
            out[f"{name}_p50_us_{n_cand}"] = r["p50_us"]
            out[f"{name}_p99_us_{n_cand}"] = r["p99_us"]
            out[f"{name}_mean_us_{n_cand}"] = r["mean_us"]
            out[f"{name}_iterations_{n_cand}"] = iters
    return out
