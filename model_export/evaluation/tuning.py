"""Coordinate search over a small grid: vary one hyper-parameter at a time over its values, keep the
best, repeat until a pass changes nothing. Far fewer fits than the full product of the grid, and
deterministic (ties keep the earlier, simpler setting)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, TypeVar

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
