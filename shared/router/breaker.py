"""A circuit breaker for one upstream endpoint: closed -> open -> half-open -> closed.

Closed: every request goes through; ``failures`` consecutive failures or timeouts open it. Open: no
request goes to the endpoint (nobody waits on it) until ``open_s`` have passed. Half-open: one probe
request goes through; its success closes the breaker, its failure opens it again for another ``open_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    __slots__ = ("failures", "open_s", "clock", "state", "streak", "opened_at", "probing", "opened")

    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or open_s <= 0:
            raise ValueError("failures must be >= 1 and open_s > 0")
        self.failures = failures
        self.open_s = open_s
        self.clock = clock
        self.state = CLOSED
        self.streak = 0             # consecutive failures while closed
        self.opened_at = 0.0
        self.probing = False        # the half-open probe is in flight
        self.opened = 0             # times it opened (a counter for tests and logs)

    def allow(self) -> bool:
        """May a request go to this endpoint now? In half-open, only the one probe may."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            if self.clock() - self.opened_at < self.open_s:
                return False
            self.state = HALF_OPEN
            self.probing = False
        return not self.probing

    def started(self) -> None:
        """A request allowed by ``allow`` was sent (in half-open it is the probe)."""
        if self.state == HALF_OPEN:
            self.probing = True

    def succeeded(self) -> None:
        self.state = CLOSED
        self.streak = 0
        self.probing = False

    def failed(self) -> None:
        if self.state == CLOSED:
            self.streak += 1
            if self.streak < self.failures:
                return
        self._open()

    def _open(self) -> None:
        if self.state != OPEN:
            self.opened += 1
        self.state = OPEN
        self.opened_at = self.clock()
        self.streak = 0
        self.probing = False

    @property
    def is_open(self) -> bool:
        """Open or half-open (the ``strata_router_breaker_open`` gauge is 1 until a probe closes it)."""
        return self.state != CLOSED
