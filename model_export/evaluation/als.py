"""Implicit-feedback ALS (the ``implicit`` package, CPU) with fold-in for every query.

The model trains once on the training pairs. Test histories grow with earlier test invoices and ALS
cannot be retrained per invoice, so every query's user factors are recomputed from its history
(``recalculate_user``: one exact least-squares solve against the fixed item factors). Training
customers are folded in the same way, so all models see exactly the same history. Past items are not
filtered out: repeat purchases are relevant here.

Confidence is ``alpha * w(n)`` where n is the number of invoices with the item and w is ``binary`` (1),
``count`` (n) or ``log`` (log1p n). Hyper-parameters are chosen on the validation split by
``tuning.coordinate_search`` over ``GRID``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.protocol import TieBreak, rank_in_chunks
from strata.model_export.evaluation.split import Queries
from strata.model_export.evaluation.tuning import tune_on_validation
from strata.shared.errors import ConfigError

logger = logging.getLogger(__name__)

Weighting = Literal["binary", "count", "log"]
GRID: dict[str, tuple[Any, ...]] = {
    "factors": (32, 64, 128, 256),
    "regularization": (0.1, 1.0, 10.0, 30.0, 100.0),
    "alpha": (0.25, 1.0, 5.0, 20.0),
    "weighting": ("binary", "count", "log"),
    "iterations": (4, 8, 15, 30),
}


@dataclass(frozen=True, slots=True)
class ALSParams:
    factors: int = 64
    regularization: float = 0.1
    alpha: float = 20.0
    weighting: Weighting = "log"
    iterations: int = 15


def confidence(counts: sparse.csr_matrix, params: ALSParams) -> sparse.csr_matrix:
    """alpha * w(invoices with the item), float32 CSR (what ``implicit`` expects)."""
    out = counts.astype(np.float32, copy=True).tocsr()
    if params.weighting == "binary":
        out.data[:] = 1.0
    elif params.weighting == "log":
        out.data = np.log1p(out.data)
    out.data *= np.float32(params.alpha)
    return out


class ImplicitALS:
    name = "implicit_als"

    def __init__(self, params: ALSParams | None = None, seed: int = 7, num_threads: int = 2,
                 grid: dict[str, tuple[Any, ...]] | None = None) -> None:
        self.params = params or ALSParams()
        self.seed = seed
        self.num_threads = num_threads
        self.grid = GRID if grid is None else grid
        self.model: Any = None
        self.ties: TieBreak | None = None

    def reseed(self, seed: int) -> None:
        self.seed = seed

    def fit(self, train: Baskets) -> None:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
            from threadpoolctl import threadpool_limits
        except ImportError as exc:
            raise ConfigError(f"implicit_als needs the 'eval' extra (pip install -e '.[eval]'): {exc}",
                              field="models") from None

        counts = sparse.csr_matrix((np.ones(len(train)), (train.customer, train.item)),
                                   shape=(train.n_customers, train.catalog.n_items))
        p = self.params
        # implicit multiplies by alpha itself; it gets alpha=1 and our already-weighted confidences
        with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS threads only contend
            model = AlternatingLeastSquares(factors=p.factors, regularization=p.regularization, alpha=1.0,
                                            iterations=p.iterations, random_state=self.seed,
                                            num_threads=self.num_threads)
            model.fit(confidence(counts, p), show_progress=False)
        self.model = model
        self.ties = TieBreak(train.popularity())

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.model is not None and self.ties is not None, "fit first"
        from threadpoolctl import threadpool_limits

        model, params = self.model, self.params

        def score(part: Queries) -> np.ndarray:
            user = model.recalculate_user(np.arange(len(part)), confidence(part.history_counts(), params))
            return (user @ model.item_factors.T).astype(np.float64)

        with threadpool_limits(1, "blas"):
            return rank_in_chunks(queries, k, score, self.ties)

    def tune(self, train: Baskets, validation: Queries) -> dict[str, Any]:
        """Coordinate search on validation NDCG@10; keeps the best parameters for the next ``fit``."""
        return tune_on_validation(self, train, validation)
