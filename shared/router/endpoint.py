"""Endpoints of one upstream tier and the power-of-two-choices picker (as Finagle and Linkerd balance).

Each endpoint keeps a peak-EWMA of its latency (a slower answer is taken at once, a faster one decays
in) and its outstanding requests; its cost is ``ewma * (outstanding + 1)``. The picker draws two
endpoints whose breakers allow a request and takes the cheaper: nearly as good as asking every endpoint
for its load, at the cost of two, and it never herds every edge onto the one endpoint that looked best.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from strata.shared.router.breaker import Breaker
from strata.shared.router.http import HttpPool

EWMA_DECAY = 0.2        # weight of a new sample that is faster than the average


class Endpoint:
    __slots__ = ("url", "pool", "breaker", "ewma_s", "outstanding")

    def __init__(self, url: str, breaker: Breaker, pool: HttpPool | None = None) -> None:
        self.url = url
        self.pool = pool if pool is not None else HttpPool(url)
        self.breaker = breaker
        self.ewma_s = 0.0           # 0 until the first answer: an untried endpoint is tried
        self.outstanding = 0

    def cost(self) -> float:
        return self.ewma_s * (self.outstanding + 1)

    def observe(self, seconds: float) -> None:
        ewma = self.ewma_s
        self.ewma_s = seconds if seconds > ewma or ewma == 0.0 else ewma + EWMA_DECAY * (seconds - ewma)


def pick(endpoints: Sequence[Endpoint], rng: random.Random) -> Endpoint | None:
    """Power of two choices among the endpoints whose breaker allows a request; None if none does."""
    if len(endpoints) == 1:
        only = endpoints[0]
        return only if only.breaker.allow() else None
    usable = [e for e in endpoints if e.breaker.allow()]
    if len(usable) <= 1:
        return usable[0] if usable else None
    a, b = rng.sample(usable, 2)
    return a if a.cost() <= b.cost() else b
