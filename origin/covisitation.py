"""The bundle's co-visitation table (``model_export.covisitation``): catalog row -> rows co-occurring in
sessions, with a score in [0, 1]. Optional: a bundle without ``covis_neighbors.npy`` has no such source.
Items added by ``POST /v1/items`` after the export have no neighbours (their rows are past the table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models.bundle import COVIS_NEIGHBORS_FILE, COVIS_SCORES_FILE


class Covisitation:
    def __init__(self, neighbors: np.ndarray, scores: np.ndarray) -> None:
        if neighbors.shape != scores.shape or neighbors.ndim != 2:
            raise BundleError(f"co-visitation arrays disagree: {neighbors.shape} vs {scores.shape}")
        self.neighbors = np.ascontiguousarray(neighbors, dtype=np.int64)
        self.scores = np.ascontiguousarray(scores, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.neighbors.shape[0])

    def of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour rows and their best score over ``rows``, best first (seeds themselves left out)."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[(rows >= 0) & (rows < len(self))]
        nb = self.neighbors[rows].ravel()
        sc = self.scores[rows].ravel()
        ok = (nb >= 0) & ~np.isin(nb, rows)
        nb, sc = nb[ok], sc[ok]
        if not nb.shape[0]:
            return nb, sc
        order = np.lexsort((nb, -sc))
        nb, sc = nb[order], sc[order]
        _, first = np.unique(nb, return_index=True)      # each neighbour once, at its best score
        first.sort()
        return nb[first], sc[first]


def load_covisitation(bundle_dir: Path | str, n_items: int) -> Covisitation | None:
    path = Path(bundle_dir) / COVIS_NEIGHBORS_FILE
    if not path.is_file():
        return None
    try:
        table = Covisitation(np.load(path, allow_pickle=False),
                             np.load(Path(bundle_dir) / COVIS_SCORES_FILE, allow_pickle=False))
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    if len(table) != n_items or (table.neighbors >= n_items).any():
        raise BundleError(f"{path}: {len(table)} rows or neighbours outside the {n_items} items of the bundle")
    return table
