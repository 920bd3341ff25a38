"""Item id -> bundle row, without touching the stored key objects.

A dict lookup per candidate compares the request's fresh string against the stored key object when
the hashes match, a cache miss per candidate on a cold PoP request. Here only the ids' own str hashes
are compared. Two implementations with the same answers:
- compiled (``shared.ranking._rowmap``, built at install when a C compiler exists): an open-addressing table of
  hashes probed in one C loop, ~1.5 µs for 100 ids;
- NumPy fallback: a sorted hash table and one ``searchsorted``, ~12 µs for 100 ids.
A false match needs a 64-bit hash collision between an unknown id and one of the catalog's ids (about
n_items / 2**64 per unknown id); colliding catalog ids are detected at load and the bundle is refused.
"""

from __future__ import annotations

import numpy as np

from strata.shared.errors import BundleError

try:
    from strata.shared.ranking._rowmap import lookup as _lookup
except ImportError:   # no C compiler at install time
    _lookup = None

COMPILED = _lookup is not None
_EMPTY = np.iinfo(np.int64).min


class ItemIndex:
    __slots__ = ("_hashes", "_rows", "_n", "_table_h", "_table_r", "_compiled")

    _hashes: np.ndarray             # item id hashes, sorted
    _rows: np.ndarray               # the row of each sorted hash
    _n: int
    _table_h: np.ndarray | None     # the compiled lookup's hash table (None: the NumPy fallback)
    _table_r: np.ndarray | None
    _compiled: bool

    def __init__(self, item_ids: list[str], compiled: bool | None = None) -> None:
        h = np.fromiter(map(hash, item_ids), dtype=np.int64, count=len(item_ids))
        order = np.argsort(h, kind="stable")
        self._hashes = h[order]
        self._rows = order.astype(np.int64)
        self._n = len(item_ids)
        if self._n > 1 and np.any(self._hashes[1:] == self._hashes[:-1]):
            raise BundleError("two item ids share a 64-bit hash; rename one of them")
        if self._n and self._hashes[0] == _EMPTY:
            raise BundleError("an item id hashes to the table's empty marker; rename it")
        self._compiled = COMPILED if compiled is None else (compiled and COMPILED)
        self._table_h, self._table_r = _open_table(h) if self._compiled else (None, None)

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, int]:
        """(row per id with -1 for ids the bundle does not know, number of unknown ids)."""
        if self._compiled and type(ids) is list:
            out = np.empty(len(ids), dtype=np.int64)
            return out, _lookup(ids, self._table_h, self._table_r, out)
        rows = self._rows_numpy(ids)
        return rows, int(np.count_nonzero(rows < 0))

    def _rows_numpy(self, ids: list[str]) -> np.ndarray:
        h = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
        if not self._n:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = self._hashes.searchsorted(h)
        np.minimum(pos, self._n - 1, out=pos)
        return np.where(self._hashes[pos] == h, self._rows[pos], -1)


def _open_table(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear-probing table at load factor <= 0.25 (short probes): hashes and their rows."""
    size = 1 << max(4, (4 * max(len(h), 1) - 1).bit_length())
    mask = size - 1
    th = np.full(size, _EMPTY, dtype=np.int64)
    tr = np.full(size, -1, dtype=np.int64)
    th_l = th.tolist()
    tr_l = tr.tolist()
    for row, hv in enumerate(h.tolist()):
        slot = hv & mask
        while th_l[slot] != _EMPTY:
            slot = (slot + 1) & mask
        th_l[slot] = hv
        tr_l[slot] = row
    return np.array(th_l, dtype=np.int64), np.array(tr_l, dtype=np.int64)
