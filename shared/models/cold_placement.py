"""Where an item without an interaction vector sits in the item ANN index: its category's centroid (the
mean direction of the category's items that have a vector). The exporter places them in the shipped shard
and the origin places items added later with the same function, so both agree to the bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def category_centroids(vectors: np.ndarray, categories: Sequence[str], wanted: Sequence[str]) -> dict[str, np.ndarray | None]:
    """Unit float32 centroid of each ``wanted`` category over the rows of ``vectors`` that are not all zero
    (one pass over the catalog); None for a category none of whose items has a vector."""
    wanted = list(dict.fromkeys(wanted))
    slot = {c: i for i, c in enumerate(wanted)}
    of_row = np.fromiter((slot.get(c, -1) for c in categories), dtype=np.int64, count=len(categories))
    use = (of_row >= 0) & np.any(vectors != 0, axis=1)
    sums = np.zeros((len(wanted), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, of_row[use], vectors[use].astype(np.float64))
    counts = np.bincount(of_row[use], minlength=len(wanted))
    out: dict[str, np.ndarray | None] = {}
    for c, i in slot.items():
        n = float(np.linalg.norm(sums[i] / counts[i])) if counts[i] else 0.0
        out[c] = (sums[i] / counts[i] / n).astype(np.float32) if n > 0 else None
    return out
