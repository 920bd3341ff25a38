"""One evaluation run: split, tune on validation, fit on training, answer every test query, score.

Validation is the last calendar month before the cut, split with the same protocol: models being tuned
train on what precedes it and are scored on its invoices, so the test invoices are never looked at
until the chosen models answer them. A model whose training is random (``protocol.Seeded``: ALS, Strata's
networks) is tuned once, then fitted and scored once per training seed; ``models`` holds the mean over the
seeds, ``spread`` the max - min, ``runs`` each seed's figures. Deterministic models run once (spread 0).
``comparison`` puts ``strata`` against the best baseline of each segment by NDCG@10.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from strata.model_export.evaluation.baskets import Baskets, baskets_from_retail
from strata.model_export.evaluation.metrics import K_MAX, METRICS, explore_relevance, recall_curve, summarize
from strata.model_export.evaluation.models import BASELINES, ModelOptions, make_recommender
from strata.model_export.evaluation.protocol import Seeded, Tunable
from strata.model_export.evaluation.split import (
    DATA_TIMEZONE,
    SEGMENTS,
    Split,
    month_before,
    parse_cut,
    temporal_split,
)
from strata.shared.errors import ConfigError

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    cut: str = "2011-11-01"
    models: tuple[str, ...] = BASELINES
    seed: int = 7  # the data's derived categories and the first training seed
    seeds: tuple[int, ...] = (7, 8, 9)  # training seeds of the seeded models
    num_threads: int = 2


def evaluate_online_retail(path: Path | str, config: EvaluationConfig = EvaluationConfig(),
                           progress: Progress | None = None) -> dict[str, Any]:
    """Load and clean the UCI Online Retail file, then ``evaluate``; the report carries the cleaning."""
    from strata.model_export.datasets.online_retail import load_online_retail

    started = time.perf_counter()
    _say(progress, "loading and cleaning")
    log = load_online_retail(path, seed=config.seed)
    baskets = baskets_from_retail(log)
    loaded = time.perf_counter() - started
    report = evaluate(baskets, config, progress)
    first = np.full(log.invoice_id.size, np.iinfo(np.int64).max)
    np.minimum.at(first, log.session, log.ts_ms)
    report["split"]["train"]["lines"] = int((first[log.session] < report["split"]["cut_utc_ms"]).sum())
    report["cleaning"] = log.report
    report["seconds"] = {"load": round(loaded, 2)} | report["seconds"]
    report["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return report


def evaluate(baskets: Baskets, config: EvaluationConfig = EvaluationConfig(),
             progress: Progress | None = None) -> dict[str, Any]:
    """The report: ``models`` x segments x metrics (mean over seeds), ``spread``, ``runs``, ``comparison``,
    ``split``, ``tuning``, ``recall_at_k``, ``seconds``."""
    cut_ms = parse_cut(config.cut)
    test = temporal_split(baskets, cut_ms)
    _check(test, baskets, config.cut)
    validation = temporal_split(test.train, month_before(cut_ms), cut_ms)
    popularity, n_invoices = test.train.popularity(), test.train.n_invoices()
    category = baskets.catalog.category
    explore = explore_relevance(test.queries.relevant, test.queries.history_counts())
    segments = {s: test.queries.segment(s) for s in SEGMENTS}
    seeds = tuple(dict.fromkeys(config.seeds or (config.seed,)))
    models: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    tuning: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in config.models:
        started = time.perf_counter()
        model = make_recommender(name, ModelOptions(seed=seeds[0], num_threads=config.num_threads))
        if isinstance(model, Tunable):
            _say(progress, f"{name}: tuning on validation")
            tuning[name] = model.tune(validation.train, validation.queries)
        runs[name] = []
        for seed in seeds if isinstance(model, Seeded) else seeds[:1]:
            run_started = time.perf_counter()
            if isinstance(model, Seeded):
                model.reseed(seed)
            _say(progress, f"{name}: fit and recommend (seed {seed})")
            model.fit(test.train)
            recs = model.recommend(test.queries, K_MAX)
            metrics = {s: summarize(recs[rows], test.queries.relevant[rows], category, popularity, n_invoices,
                                    explore=explore[rows]) for s, rows in segments.items()}
            curve = {s: recall_curve(recs[rows], test.queries.relevant[rows]) for s, rows in segments.items()}
            runs[name].append({"seed": seed, "metrics": metrics, "recall_at_k": curve,
                               "seconds": round(time.perf_counter() - run_started, 2)})
        models[name], spread[name] = _mean_and_spread([r["metrics"] for r in runs[name]])
        curves[name] = {s: _mean_curve([r["recall_at_k"][s] for r in runs[name]]) for s in SEGMENTS}
        for r in runs[name]:
            del r["recall_at_k"]
        seconds[name] = round(time.perf_counter() - started, 2)
        logger.info("%s: %s (%.1f s)", name, models[name], seconds[name])
    return {"models": models, "spread": spread, "comparison": comparison(models, spread), "seeds": list(seeds),
            "runs": runs, "split": split_summary(test, validation, config.cut, explore), "tuning": tuning,
            "recall_at_k": curves, "seconds": seconds}


def _mean_and_spread(per_seed: list[dict[str, dict[str, float | None]]]) -> tuple[dict, dict]:
    """Per segment and metric: the mean over seeds and max - min (None stays None)."""
    mean: dict[str, dict[str, float | None]] = {}
    spread: dict[str, dict[str, float | None]] = {}
    for segment in per_seed[0]:
        mean[segment], spread[segment] = {}, {}
        for metric in METRICS:
            values = [m[segment][metric] for m in per_seed]
            if any(v is None for v in values):
                mean[segment][metric] = spread[segment][metric] = None
                continue
            mean[segment][metric] = round(float(np.mean(values)), 6)
            spread[segment][metric] = round(float(np.max(values) - np.min(values)), 6)
    return mean, spread


def _mean_curve(curves: list[list[float]]) -> list[float]:
    if not curves or not curves[0]:
        return []
    return [round(float(v), 6) for v in np.mean(np.asarray(curves, dtype=np.float64), axis=0)]


def comparison(models: dict[str, Any], spread: dict[str, Any], metric: str = "ndcg@10") -> dict[str, Any]:
    """Per segment: ``strata``'s mean over the best baseline's (by ``metric``), and whether the margin is
    larger than both spreads. Empty without ``strata`` or without a baseline."""
    if "strata" not in models or len(models) < 2:
        return {}
    out: dict[str, Any] = {"metric": metric}
    for segment in SEGMENTS:
        scored = {m: v[segment][metric] for m, v in models.items() if m != "strata" and v[segment][metric]}
        ours = models["strata"][segment][metric]
        if not scored or ours is None:
            continue
        best = max(scored, key=scored.__getitem__)
        margin = ours - scored[best]
        out[segment] = {"best_baseline": best, "baseline": scored[best], "strata": ours,
                        "ratio": round(ours / scored[best], 4), "margin": round(margin, 6),
                        "margin_exceeds_spread": bool(margin > max(spread["strata"][segment][metric],
                                                                   spread[best][segment][metric]))}
    return out


def split_summary(test: Split, validation: Split, cut: str, explore: Any = None) -> dict[str, Any]:
    q, train = test.queries, test.train

    def segment_counts(queries: Any, explore: Any = None) -> dict[str, dict[str, int]]:
        out = {s: {"invoices": int(queries.segment(s).sum()),
                   "customers": int(np.unique(queries.customer[queries.segment(s)]).size)} for s in SEGMENTS}
        if explore is not None:  # invoices with at least one item the customer never bought before
            some = np.diff(explore.indptr) > 0
            for s in SEGMENTS:
                out[s]["explore_invoices"] = int((some & queries.segment(s)).sum())
        return out

    return {
        "cut": cut, "timezone": str(DATA_TIMEZONE), "cut_utc_ms": int(test.cut_ms),
        "train": {"pairs": len(train), "invoices": train.n_invoices(),
                  "customers": int(np.unique(train.customer).size),
                  "items_sold": int((train.popularity() > 0).sum()), "first": _day(int(train.ts_ms.min())),
                  "last": _day(int(train.ts_ms.max()))},
        "test": segment_counts(q, explore) | {"pairs": int(q.relevant.nnz), "last": _day(int(q.at_ms.max()))},
        "validation": {"from": _day(validation.cut_ms), "to": cut, "train_pairs": len(validation.train)}
        | segment_counts(validation.queries),
        "catalog_items": q.log.catalog.n_items,
        "protocol": "each test invoice is answered from the customer's pairs strictly before it "
                    "(earlier test invoices included); relevant = its distinct items",
    }


def _check(test: Split, baskets: Baskets, cut: str) -> None:
    if len(test.train) and len(test.queries):
        return
    span = f"{_day(int(baskets.ts_ms.min()))} to {_day(int(baskets.ts_ms.max()))}" if len(baskets) else "empty"
    side = "no training invoices before it" if not len(test.train) else "no test invoices after it"
    raise ConfigError(f"cut {cut} leaves {side} (data runs {span})", field="cut")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, DATA_TIMEZONE).strftime("%Y-%m-%d %H:%M")


def _say(progress: Progress | None, step: str) -> None:
    logger.info("eval: %s", step)
    if progress is not None:
        progress(step)
