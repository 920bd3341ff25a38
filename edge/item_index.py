"""Item id -> bundle row, vectorised.

A dict lookup per candidate compares the request's fresh string against the stored key object, which
is a cache miss per candidate on a cold PoP request (~30 µs for 100 ids under load). Here the ids'
own str hashes are looked up in a sorted int64 table with one ``searchsorted``; stored keys are never
touched. A false match needs a 64-bit hash collision between an unknown id and one of the catalog's
ids (about n_items / 2**64 per unknown id); colliding catalog ids are detected at load and refused.
"""

from __future__ import annotations

import numpy as np

from shared.errors import BundleError


class ItemIndex:
    __slots__ = ("_hashes", "_rows", "_n")

    def __init__(self, item_ids: list[str]) -> None:
        h = np.fromiter(map(hash, item_ids), dtype=np.int64, count=len(item_ids))
        order = np.argsort(h, kind="stable")
        self._hashes = h[order]
        self._rows = order.astype(np.int64)
        self._n = len(item_ids)
        if self._n > 1 and np.any(self._hashes[1:] == self._hashes[:-1]):
            raise BundleError("two item ids share a 64-bit hash; rename one of them")

    def rows(self, ids: list[str]) -> np.ndarray:
        """Row per id, -1 for ids the bundle does not know."""
        h = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        pos = np.searchsorted(self._hashes, h)
        np.minimum(pos, self._n - 1, out=pos)
        return np.where(self._hashes[pos] == h, self._rows[pos], -1)
