"""Per-slot bandit counts cached at the PoP, aligned to the bundle's item rows.

The stream processor HINCRBYs ``c:<item>`` (clicks) and ``n:<item>`` (impressions) in the slot's hash;
the edge re-reads the hashes of its tracked slots in the background, never on the request path
(decoded by ``shared.online_store.codecs.parse_counts``).
Tracked slots are the configured ones (``edge.bandit.slots``, never evicted) plus a bounded LRU of
other recently requested slots, so junk slot names from clients can neither grow memory nor push a
configured slot out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from strata.shared.online_store.codecs import SlotCounts
from strata.shared.ranking.row_map import ItemIndex


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

    def carry_over(self, old: BanditCounts, index: ItemIndex) -> None:
        """Take ``old``'s tracked slots and counts into these (rows of a bundle that only grew: old rows keep
        their row; counts of ids the old bundle did not know move to their new row when ``index`` knows them)."""
        for key, sc in [*old.pinned.items(), *old.recent.items()]:
            moved = sc if sc.empty else _grown(sc, self.n_items, index)
            if key in old.pinned:
                self.pinned[key] = self._zero if moved.empty else moved
            else:
                self.recent[key] = self._zero if moved.empty else moved

    def set(self, tenant: str, slot: str, counts: SlotCounts) -> None:
        """Store refreshed counts for a slot that is still tracked (an evicted slot is not re-added)."""
        key = (tenant, slot)
        if counts.empty:
            counts = self._zero          # empty hashes share one object: junk slots cost no arrays
        if key in self.pinned:
            self.pinned[key] = counts
        elif key in self.recent:
            self.recent[key] = counts


def _grown(sc: SlotCounts, n_items: int, index: ItemIndex) -> SlotCounts:
    out = SlotCounts(n_items)
    n = min(sc.clicks.shape[0], n_items)
    out.clicks[:n] = sc.clicks[:n]
    out.imps[:n] = sc.imps[:n]
    out.expected[:n] = sc.expected[:n]
    if sc.extra:
        ids = list(sc.extra)
        rows, _ = index.lookup(ids)
        for item_id, row in zip(ids, rows.tolist(), strict=True):
            clicks, imps, expected = sc.extra[item_id]
            if row >= 0:
                out.clicks[row] += clicks
                out.imps[row] += imps
                out.expected[row] += expected
            else:
                out.extra[item_id] = (clicks, imps, expected)
    return out
