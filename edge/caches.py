"""LRU + TTL caches for the PoP-local state (responses, session vectors)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class TTLCache:
    """Bounded LRU map whose entries expire ``ttl`` seconds after insertion.

    ``get_entry`` also returns the age so callers can serve stale values while revalidating.
    Single-threaded by design (one event loop per edge worker).
    """

    __slots__ = ("_data", "maxsize", "ttl", "hits", "misses", "_clock")

    def __init__(self, maxsize: int, ttl: float, clock=time.monotonic) -> None:
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.maxsize = maxsize
        self.ttl = ttl
        self.hits = 0
        self.misses = 0
        self._clock = clock

    def get(self, key: Hashable) -> Any | None:
        """Fresh value or None (expired entries count as misses and are dropped)."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        if self._clock() - entry[0] > self.ttl:
            del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry[1]

    def get_entry(self, key: Hashable) -> tuple[float, Any] | None:
        """(age_seconds, value) regardless of TTL, or None. Does not count hits/misses."""
        entry = self._data.get(key)
        if entry is None:
            return None
        self._data.move_to_end(key)
        return self._clock() - entry[0], entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self.maxsize <= 0:
            return
        data = self._data
        data[key] = (self._clock(), value)
        data.move_to_end(key)
        if len(data) > self.maxsize:
            data.popitem(last=False)

    def discard(self, key: Hashable) -> Any | None:
        """Drop ``key`` if present; returns its value."""
        entry = self._data.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
