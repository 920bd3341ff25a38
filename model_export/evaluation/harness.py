"""One evaluation run: split, tune on validation, fit on training, answer every test query, score.

Validation is the last calendar month before the cut, split with the same protocol: models being tuned
train on what precedes it and are scored on its invoices, so the test invoices are never looked at
until the chosen models answer them once.
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
from strata.model_export.evaluation.metrics import K_MAX, recall_curve, summarize
from strata.model_export.evaluation.models import BASELINES, ModelOptions, make_recommender
from strata.model_export.evaluation.protocol import Tunable
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
    seed: int = 7
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
    """The report: ``models`` x segments x metrics, ``split``, ``tuning``, ``recall_at_k``, ``seconds``."""
    cut_ms = parse_cut(config.cut)
    test = temporal_split(baskets, cut_ms)
    _check(test, baskets, config.cut)
    validation = temporal_split(test.train, month_before(cut_ms), cut_ms)
    popularity, n_invoices = test.train.popularity(), test.train.n_invoices()
    category = baskets.catalog.category
    options = ModelOptions(seed=config.seed, num_threads=config.num_threads)
    models: dict[str, Any] = {}
    tuning: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in config.models:
        started = time.perf_counter()
        model = make_recommender(name, options)
        if isinstance(model, Tunable):
            _say(progress, f"{name}: tuning on validation")
            tuning[name] = model.tune(validation.train, validation.queries)
        _say(progress, f"{name}: fit and recommend")
        model.fit(test.train)
        recs = model.recommend(test.queries, K_MAX)
        models[name], curves[name] = {}, {}
        for segment in SEGMENTS:
            rows = test.queries.segment(segment)
            relevant = test.queries.relevant[rows]
            models[name][segment] = summarize(recs[rows], relevant, category, popularity, n_invoices)
            curves[name][segment] = recall_curve(recs[rows], relevant)
        seconds[name] = round(time.perf_counter() - started, 2)
        logger.info("%s: %s (%.1f s)", name, models[name], seconds[name])
    return {"models": models, "split": split_summary(test, validation, config.cut), "tuning": tuning,
            "recall_at_k": curves, "seconds": seconds}


def split_summary(test: Split, validation: Split, cut: str) -> dict[str, Any]:
    q, train = test.queries, test.train

    def segment_counts(queries: Any) -> dict[str, dict[str, int]]:
        return {s: {"invoices": int(queries.segment(s).sum()),
                    "customers": int(np.unique(queries.customer[queries.segment(s)]).size)} for s in SEGMENTS}

    return {
        "cut": cut, "timezone": str(DATA_TIMEZONE), "cut_utc_ms": int(test.cut_ms),
        "train": {"pairs": len(train), "invoices": train.n_invoices(),
                  "customers": int(np.unique(train.customer).size),
                  "items_sold": int((train.popularity() > 0).sum()), "first": _day(int(train.ts_ms.min())),
                  "last": _day(int(train.ts_ms.max()))},
        "test": segment_counts(q) | {"pairs": int(q.relevant.nnz), "last": _day(int(q.at_ms.max()))},
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
