"""Token budget per minute and per day (the seeds cap LLM spend per day): a request that would exceed
either window is not sent; the template reasoner answers instead."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBudget:
    def __init__(self, per_minute: int, per_day: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.per_day = per_day
        self._clock = clock
        self._minute = (0.0, 0)     # (window start, tokens spent)
        self._day = (0.0, 0)

    def _windows(self) -> tuple[int, int]:
        now = self._clock()
        if now - self._minute[0] >= 60.0:
            self._minute = (now, 0)
        if now - self._day[0] >= 86_400.0:
            self._day = (now, 0)
        return self._minute[1], self._day[1]

    def allows(self, tokens: int) -> bool:
        minute, day = self._windows()
        return minute + tokens <= self.per_minute and day + tokens <= self.per_day

    def spend(self, tokens: int) -> None:
        self._windows()
        self._minute = (self._minute[0], self._minute[1] + tokens)
        self._day = (self._day[0], self._day[1] + tokens)

    @property
    def spent_today(self) -> int:
        return self._windows()[1]
