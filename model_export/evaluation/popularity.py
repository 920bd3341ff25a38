"""Non-personal baselines: what sells overall, and what sold in the last days of training."""

from __future__ import annotations

import numpy as np

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.protocol import TieBreak
from strata.model_export.evaluation.split import Queries

DAY_MS = 86_400_000


class Popularity:
    """Distinct training invoices per item; the same list for everyone."""

    name = "popularity"

    def __init__(self) -> None:
        self.ties: TieBreak | None = None

    def fit(self, train: Baskets) -> None:
        self.ties = TieBreak(train.popularity())

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.ties is not None, "fit first"
        top = self.ties.order[:k]  # the tie-break order IS the popularity ranking
        return np.tile(top, (len(queries), 1)).astype(np.int64)


class RecentPopularity:
    """Invoices per item in the last ``days`` of training (seasonal gift-ware moves fast); older sales
    only break ties."""

    name = "recent"

    def __init__(self, days: float = 30.0) -> None:
        self.days = days
        self.recent: np.ndarray | None = None
        self.ties: TieBreak | None = None

    def fit(self, train: Baskets) -> None:
        self.ties = TieBreak(train.popularity())
        since = int(train.ts_ms.max()) - int(self.days * DAY_MS) if len(train) else 0
        self.recent = train.where(train.ts_ms > since).popularity().astype(np.float64)

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        assert self.ties is not None and self.recent is not None, "fit first"
        top = self.ties.top(self.recent[None, :], k)[0]
        return np.tile(top, (len(queries), 1))
