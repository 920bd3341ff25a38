"""Admission control for escalations: at most ``max_share`` of the requests the router saw in the last
``window_s`` seconds go to an upper tier (``router.max_escalation_share``); beyond it the edge answers
itself (``escalation_budget``), so no number of edges can flood an origin with their new sessions.

The window is a ring of one-second buckets (two counters each): O(1) per request, no allocation. The
``+ 1`` in the rule lets the first request of an empty window through (a share of a handful of requests
would otherwise refuse them all).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AdmissionWindow:
    __slots__ = ("max_share", "clock", "n", "last", "epochs", "seen", "sent", "seen_total", "sent_total")

    def __init__(self, max_share: float, window_s: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= max_share <= 1:
            raise ValueError(f"max_share must be within [0, 1], got {max_share}")
        if window_s < 1:
            raise ValueError("window_s must be >= 1")
        self.max_share = max_share
        self.clock = clock
        self.n = window_s
        self.last = -1
        self.epochs = [-1] * window_s      # which second each bucket holds
        self.seen = [0] * window_s         # requests the router saw, per bucket
        self.sent = [0] * window_s         # escalations admitted, per bucket
        self.seen_total = 0                # over the window
        self.sent_total = 0

    def _bucket(self) -> int:
        second = int(self.clock())
        if second != self.last:             # a new second: buckets older than the window leave it
            self._expire(second)
            self.last = second
        i = second % self.n
        self.epochs[i] = second             # expired (empty) or already this second's
        return i

    def _expire(self, second: int) -> None:
        for j in range(self.n):
            if self.epochs[j] >= 0 and second - self.epochs[j] >= self.n:
                self.seen_total -= self.seen[j]
                self.sent_total -= self.sent[j]
                self.seen[j] = self.sent[j] = 0
                self.epochs[j] = -1

    def observe(self) -> None:
        """A request the router saw but did not need to escalate (counts in the denominator only)."""
        i = self._bucket()
        self.seen[i] += 1
        self.seen_total += 1

    def admit(self) -> bool:
        """A request that wants to escalate: counted, and admitted while the share stays within the budget."""
        i = self._bucket()
        self.seen[i] += 1
        self.seen_total += 1
        share = self.max_share
        if share >= 1.0 or (share > 0.0 and self.sent_total < share * self.seen_total + 1):
            self.sent[i] += 1
            self.sent_total += 1
            return True
        return False

    def share(self) -> float:
        """Escalations admitted / requests seen over the window (the ``strata_router_escalation_share`` gauge)."""
        self._bucket()
        return self.sent_total / self.seen_total if self.seen_total else 0.0
