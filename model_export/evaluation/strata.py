"""``strata``: Strata's served pipeline as an evaluated model.

``fit`` trains the two-tower and the deep ranker on the training baskets (``model_export.retail_models``),
exports both to ONNX behind the parity gate, and loads the ONNX files into the same
``shared.models.retrieval_ranker.RetrievalRanker`` the origin serves with; ``recommend`` answers through it, so
what is scored is what serving runs (onnxruntime, the shared feature code), not the torch modules.
Items outside a query's candidates rank after them in popularity order (the shared tie-break).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.protocol import TieBreak, rank_in_chunks
from strata.model_export.evaluation.split import Queries
from strata.model_export.item_stats import histories
from strata.model_export.retail_models import (
    StrataParams,
    TrainedModels,
    parity_inputs,
    train_models,
    write_onnx,
)
from strata.shared.models.ranker_bundle import RANKER_FILE, USER_TOWER_FILE
from strata.shared.models.retrieval_ranker import RankerModel, RetrievalRanker, UserTowerModel


class StrataRecommender:
    name = "strata"

    def __init__(self, params: StrataParams = StrataParams(), num_threads: int = 2) -> None:
        self.params = params
        self.num_threads = num_threads
        self.pipeline: RetrievalRanker | None = None
        self.ties: TieBreak | None = None
        self.models: TrainedModels | None = None
        self.report: dict[str, Any] = {}

    def reseed(self, seed: int) -> None:
        self.params = replace(self.params, seed=seed)

    def fit(self, train: Baskets) -> None:
        import torch

        torch.set_num_threads(self.num_threads)
        self.models = train_models(train, self.params)
        hist, rows = parity_inputs(train, self.models, self.params.sizes, max(self.params.parity_min_rows, 1))
        with tempfile.TemporaryDirectory(prefix="strata-eval-") as tmp:
            parity = write_onnx(self.models, Path(tmp), rows, self.params.parity_min_rows, hist)
            tower = UserTowerModel(Path(tmp) / USER_TOWER_FILE, threads=self.num_threads)
            ranker = RankerModel(Path(tmp) / RANKER_FILE, threads=self.num_threads)
        self.pipeline = RetrievalRanker(tower, self.models.towers.item_vectors, ranker, self.models.stats,
                                        self.params.sizes)
        self.ties = TieBreak(train.popularity())
        self.report = {**self.models.info, "parity": parity}

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.pipeline is not None and self.ties is not None, "fit first"
        pipeline = self.pipeline

        def score(part: Queries) -> np.ndarray:
            ranked = pipeline.rank(histories(part))
            dense = np.full((len(part), part.log.catalog.n_items), -np.inf)
            q = np.repeat(np.arange(len(part)), np.diff(ranked.ptr))
            dense[q, ranked.item] = ranked.score
            return dense

        return rank_in_chunks(queries, k, score, self.ties)
