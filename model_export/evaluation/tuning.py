"""Coordinate search over a small grid: vary one hyper-parameter at a time over its values, keep the
best, repeat until a pass changes nothing. Far fewer fits than the full product of the grid, and
deterministic (ties keep the earlier, simpler setting)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, TypeVar

from strata.model_export.evaluation.metrics import ndcg_at

logger = logging.getLogger(__name__)

P = TypeVar("P")  # a frozen dataclass of hyper-parameters
MAX_PASSES = 3


def coordinate_search(score: Callable[[P], float], start: P, grid: dict[str, tuple[Any, ...]],
                      label: str = "") -> dict[str, Any]:
    """Best parameters by ``score`` (higher is better): ``{"best", "params", "score", "trials"}`` where
    ``best`` is the dataclass, ``params`` its dict, and every trial is its params plus score and seconds."""
    seen: dict[Any, float] = {}
    trials: list[dict[str, Any]] = []

    def trial(params: P) -> float:
        if params not in seen:
            started = time.perf_counter()
            seen[params] = score(params)
            trials.append(asdict(params) | {"score": round(seen[params], 6),
                                            "seconds": round(time.perf_counter() - started, 2)})
            logger.info("%s %s: %.4f", label, params, seen[params])
        return seen[params]

    best = start
    for _ in range(MAX_PASSES):
        before = best
        for name, values in grid.items():
            for value in values:
                candidate = replace(best, **{name: value})
                if trial(candidate) > trial(best):
                    best = candidate
        if best == before:
            break
    return {"best": best, "params": asdict(best), "score": round(seen[best], 6), "trials": trials}


def tune_on_validation(model: Any, train: Any, validation: Any) -> dict[str, Any]:
    """Coordinate search of ``model.params`` over ``model.grid`` on validation NDCG@10 (``model.fit`` then
    ``model.recommend``); keeps the best parameters on the model for its next ``fit``. The tuning record for the
    evaluation JSON."""
    if len(validation) == 0 or len(train) == 0:
        return {"params": asdict(model.params), "validation_ndcg@10": None, "trials": [],
                "note": "no validation invoices: default parameters"}

    def score(params: Any) -> float:
        model.params = params
        model.fit(train)
        return ndcg_at(model.recommend(validation, 10), validation.relevant, 10)

    found = coordinate_search(score, model.params, model.grid, label=model.name)
    model.params = found["best"]
    return {"params": found["params"], "validation_ndcg@10": found["score"], "search": "coordinate",
            "objective": "validation ndcg@10", "grid": {k: list(v) for k, v in model.grid.items()},
            "trials": found["trials"]}
