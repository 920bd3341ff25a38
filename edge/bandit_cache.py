"""Per-slot bandit counts cached at the PoP, aligned to the bundle's item rows.

The stream processor HINCRBYs ``c:<item>`` (clicks) and ``n:<item>`` (impressions) in the slot's hash;
the edge re-reads the hash every ``refresh_s`` in the background, never on the request path.
"""

from __future__ import annotations

import math

import numpy as np

_EMPTY = np.zeros(0, dtype=np.float64)


class SlotCounts:
    __slots__ = ("clicks", "imps", "extra", "refreshed_at", "empty")

    def __init__(self, n_items: int, empty: bool = False) -> None:
        self.empty = empty          # no observations at all: the ranker uses the prior alone
        self.clicks = np.zeros(n_items, dtype=np.float64)
        self.imps = np.zeros(n_items, dtype=np.float64)
        self.extra: dict[str, tuple[float, float]] = {}   # counts for ids unknown to the bundle
        self.refreshed_at = 0.0


def parse_counts(raw: dict[bytes, bytes], index: dict[str, int], n_items: int) -> SlotCounts:
    """HGETALL result -> arrays. Malformed fields are skipped rather than failing the refresh."""
    out = SlotCounts(n_items, empty=not raw)
    for f, v in raw.items():
        try:
            field = f.decode() if isinstance(f, bytes) else f
            value = float(v)
        except (TypeError, ValueError, UnicodeDecodeError):
            continue
        kind, _, item_id = field.partition(":")
        if kind not in ("c", "n") or not item_id or not math.isfinite(value) or value < 0:
            continue
        row = index.get(item_id)
        if row is not None:
            (out.clicks if kind == "c" else out.imps)[row] = value
        else:
            c, n = out.extra.get(item_id, (0.0, 0.0))
            out.extra[item_id] = (value, n) if kind == "c" else (c, value)
    return out


class BanditCounts:
    """(tenant, slot) -> SlotCounts. Slots are registered when first requested (bounded)."""

    def __init__(self, n_items: int, max_slots: int = 1024) -> None:
        self.n_items = n_items
        self.max_slots = max_slots
        self.slots: dict[tuple[str, str], SlotCounts] = {}
        self._zero = SlotCounts(n_items, empty=True)

    def get(self, tenant: str, slot: str) -> SlotCounts:
        sc = self.slots.get((tenant, slot))
        if sc is None:
            if len(self.slots) < self.max_slots:
                self.slots[(tenant, slot)] = self._zero   # registered; the refresher fills it
            return self._zero
        return sc

    def set(self, tenant: str, slot: str, counts: SlotCounts) -> None:
        self.slots[(tenant, slot)] = counts
