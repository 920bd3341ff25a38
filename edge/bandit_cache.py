"""Per-slot bandit counts cached at the PoP, aligned to the bundle's item rows.

The stream processor HINCRBYs ``c:<item>`` (clicks) and ``n:<item>`` (impressions) in the slot's hash;
the edge re-reads the hashes of its tracked slots in the background, never on the request path.
Tracked slots are the configured ones (``edge.bandit.slots``, never evicted) plus a bounded LRU of
other recently requested slots, so junk slot names from clients can neither grow memory nor push a
configured slot out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from strata.edge.row_map import ItemIndex


class SlotCounts:
    __slots__ = ("clicks", "imps", "extra", "empty")

    def __init__(self, n_items: int, empty: bool = False) -> None:
        self.empty = empty          # no observations at all: the ranker uses the prior alone
        self.clicks = np.zeros(n_items, dtype=np.float64)
        self.imps = np.zeros(n_items, dtype=np.float64)
        self.extra: dict[str, tuple[float, float]] = {}   # counts for ids unknown to the bundle


def parse_counts(raw: Mapping[bytes | str, bytes | str], index: ItemIndex | Mapping[str, int],
                 n_items: int) -> SlotCounts:
    """HGETALL result -> arrays, vectorised over fields. Malformed fields are skipped, never fatal.

    ``index`` maps item ids to rows: the bundle's compiled ``ItemIndex`` (one C loop for all ids) or
    any mapping."""
    out = SlotCounts(n_items, empty=not raw)
    if not raw:
        return out
    fields = [f.encode("utf-8", "surrogatepass") if isinstance(f, str) else f for f in raw]
    try:       # the common case: every field name decodes; the per-field path handles the rest
        ids = [f[2:].decode() for f in fields]
    except UnicodeDecodeError:
        ids = [_decoded(f) for f in fields]
    kinds = np.array([f[:2] for f in fields], dtype="S2")
    is_click = kinds == b"c:"
    is_imps = kinds == b"n:"
    values = _floats(list(raw.values()))
    ok = (is_click | is_imps) & np.isfinite(values) & (values >= 0)
    ok &= np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) > 0   # "": no id, or undecodable
    if isinstance(index, ItemIndex):
        rows, n_unknown = index.lookup(ids)
    else:
        rows = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        n_unknown = int(np.count_nonzero(rows < 0))
    known = ok & (rows >= 0)
    out.clicks[rows[known & is_click]] = values[known & is_click]
    out.imps[rows[known & is_imps]] = values[known & is_imps]
    if n_unknown:
        for i in np.flatnonzero(ok & (rows < 0)).tolist():
            c, n = out.extra.get(ids[i], (0.0, 0.0))
            out.extra[ids[i]] = (float(values[i]), n) if is_click[i] else (c, float(values[i]))
    return out


def _decoded(field: bytes) -> str:
    try:
        return field[2:].decode()
    except UnicodeDecodeError:
        return ""


def _floats(vals: list[bytes | str]) -> np.ndarray:
    """Parse counter values; an unparsable value becomes NaN (and is then skipped)."""
    try:
        return np.array(vals, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.empty(len(vals), dtype=np.float64)
        for i, v in enumerate(vals):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                out[i] = np.nan
        return out


class BanditCounts:
    """(tenant, slot) -> SlotCounts for the configured slots plus an LRU of recently requested ones."""

    def __init__(self, n_items: int, pinned: Iterable[tuple[str, str]] = (), recent_max: int = 256) -> None:
        self.n_items = n_items
        self.recent_max = recent_max
        self._zero = SlotCounts(n_items, empty=True)
        self.pinned: dict[tuple[str, str], SlotCounts] = {key: self._zero for key in pinned}
        self.recent: OrderedDict[tuple[str, str], SlotCounts] = OrderedDict()

    def get(self, tenant: str, slot: str) -> SlotCounts:
        """The slot's counts (all-zero until the refresher has read them); touches the LRU."""
        key = (tenant, slot)
        sc = self.pinned.get(key)
        if sc is not None:
            return sc
        recent = self.recent
        sc = recent.get(key)
        if sc is not None:
            recent.move_to_end(key)
            return sc
        if self.recent_max:
            recent[key] = self._zero     # tracked from now on; the refresher fills it
            if len(recent) > self.recent_max:
                recent.popitem(last=False)
        return self._zero

    def tracked(self) -> list[tuple[str, str]]:
        return [*self.pinned, *self.recent]

    def set(self, tenant: str, slot: str, counts: SlotCounts) -> None:
        """Store refreshed counts for a slot that is still tracked (an evicted slot is not re-added)."""
        key = (tenant, slot)
        if counts.empty:
            counts = self._zero          # empty hashes share one object: junk slots cost no arrays
        if key in self.pinned:
            self.pinned[key] = counts
        elif key in self.recent:
            self.recent[key] = counts
