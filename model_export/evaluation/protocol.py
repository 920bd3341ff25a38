"""What a model must do to be evaluated, and the one ranking rule every model shares.

``fit(train)`` sees only the pairs before the cut; ``recommend(queries, k)`` answers a batch of
queries, each from its own history (``Queries.history_*``), as a server would. Batches, not single
histories, because ALS fold-in and a matrix product over a thousand histories cost what one does.
Ties are broken the same way for every model (training popularity, then catalog order), so an empty
history falls back to popularity and two runs give the same lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.split import Queries

CHUNK = 1024  # queries scored at once: a dense [1024, n_items] float64 block is ~30 MB for 3.7k items


@runtime_checkable
class Recommender(Protocol):
    name: str

    def fit(self, train: Baskets) -> None: ...

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        """int64 [len(queries), k] distinct catalog indices, best first."""
        ...


@runtime_checkable
class Tunable(Protocol):
    """A model with hyper-parameters, tuned on a validation split that ends where training ends."""

    def tune(self, train: Baskets, validation: Queries) -> dict[str, Any]:
        """Choose and keep hyper-parameters; return what was tried and chosen (JSON-ready)."""
        ...


@runtime_checkable
class Seeded(Protocol):
    """A model whose fit depends on a random seed (the harness runs it once per training seed)."""

    def reseed(self, seed: int) -> None: ...


class TieBreak:
    """Ranks scores with ties going to the more popular item, then the lower catalog index.

    Columns are permuted once into tie-break order, so a stable argsort of the scores does the rest.
    """

    def __init__(self, popularity: np.ndarray) -> None:
        self.order = np.lexsort((np.arange(popularity.size), -popularity.astype(np.float64)))

    def top(self, scores: np.ndarray, k: int) -> np.ndarray:
        k = min(k, scores.shape[1])
        best = np.argsort(-scores[:, self.order], axis=1, kind="stable")[:, :k]
        return self.order[best].astype(np.int64)


def rank_in_chunks(queries: Queries, k: int, score: Callable[[Queries], np.ndarray],
                   ties: TieBreak) -> np.ndarray:
    """Top-k per query from ``score`` (dense [n, n_items] per chunk), a chunk at a time to bound memory."""
    k = min(k, queries.log.catalog.n_items)
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), CHUNK):
        part = queries.take(slice(lo, lo + CHUNK))
        out[lo:lo + len(part)] = ties.top(score(part), k)
    return out
