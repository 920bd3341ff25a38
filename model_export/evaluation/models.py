"""The evaluated models by name. Strata's served pipeline (two-tower retrieval + deep ranker, scored
through the exported ONNX models) joins as ``strata``: a class with ``name``, ``fit`` and ``recommend``
(``protocol.Recommender``, optionally ``Tunable``) added to ``RECOMMENDERS``; the harness, the JSON, the
table and the plot need no change."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from strata.model_export.evaluation.als import ImplicitALS
from strata.model_export.evaluation.item_knn import ItemKNN
from strata.model_export.evaluation.popularity import Popularity, RecentPopularity
from strata.model_export.evaluation.protocol import Recommender
from strata.model_export.evaluation.repeat import RepeatPurchases
from strata.model_export.evaluation.tifu_knn import TIFUKNN
from strata.model_export.evaluation.upcf import UPCF
from strata.shared.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ModelOptions:
    seed: int = 7
    num_threads: int = 2  # this machine has 2 cores; 1 gives the same lists, only slower


RECOMMENDERS: dict[str, Callable[[ModelOptions], Recommender]] = {
    "popularity": lambda _: Popularity(),
    "recent": lambda _: RecentPopularity(days=30.0),
    "repeat": lambda _: RepeatPurchases(),
    "item_knn": lambda _: ItemKNN(),
    "implicit_als": lambda o: ImplicitALS(seed=o.seed, num_threads=o.num_threads),
    "tifu_knn": lambda _: TIFUKNN(),
    "upcf": lambda _: UPCF(),
}
BASELINES = ("popularity", "recent", "repeat", "item_knn", "implicit_als", "tifu_knn", "upcf")


def _strata(options: ModelOptions) -> Recommender:
    from strata.model_export.evaluation.strata import StrataRecommender  # torch: the ``train`` extra
    from strata.model_export.retail_models import StrataParams

    return StrataRecommender(StrataParams(seed=options.seed), num_threads=options.num_threads)


RECOMMENDERS["strata"] = _strata
# Strata's own models train with torch; without it the default run is the baselines alone.
HAS_TORCH = importlib.util.find_spec("torch") is not None
DEFAULT_MODELS = BASELINES + (("strata",) if HAS_TORCH else ())


def make_recommender(name: str, options: ModelOptions) -> Recommender:
    if name not in RECOMMENDERS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(RECOMMENDERS)}", field="models")
    return RECOMMENDERS[name](options)
