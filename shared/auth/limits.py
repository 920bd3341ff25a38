"""Token buckets per API key and per client address (``rate_limit.per_key_rps``, ``rate_limit.per_ip_rps``,
``rate_limit.burst``; 0 turns a limit off).

Each process decides locally, in O(1) and without I/O: a bucket holds up to ``burst`` tokens and refills at the
rate; a request takes one or is refused (429) with ``Retry-After`` = when the next token arrives. Regional tiers
(tier 2, the origin) run several processes behind one address: ``SharedBuckets`` (``shared.auth.shared_limits``)
publishes what each process took through the store and debits the others' takes from the local buckets, so
the limit holds for the whole region within one sync interval.
"""

from __future__ import annotations

import time

from strata.shared.errors import TooManyRequests


class TokenBuckets:
    """Buckets by name. ``take`` is the hot path: one dict lookup and a few float operations."""

    __slots__ = ("rate", "capacity", "max_entries", "_b", "taken", "what")

    def __init__(self, rate: float, burst: float, what: str, max_entries: int = 200_000) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = burst if burst > 0 else max(rate, 1.0)
        self.max_entries = max_entries
        self._b: dict[str, list[float]] = {}          # name -> [tokens, last refill (monotonic s)]
        self.taken: dict[str, int] = {}               # name -> tokens taken here since the last sync
        self.what = what                              # "key" | "client address" (the 429's wording)

    def take(self, name: str, now: float) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        b = self._b.get(name)
        if b is None:
            if len(self._b) >= self.max_entries:
                self._sweep(now)
            self._b[name] = [self.capacity - 1.0, now]
            self.taken[name] = self.taken.get(name, 0) + 1
            return 0.0
        tokens = b[0] + (now - b[1]) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            self.taken[name] = self.taken.get(name, 0) + 1
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / self.rate

    def debit(self, name: str, tokens: float, now: float) -> None:
        """Tokens other processes took for ``name``: the bucket may go below zero (its owner then waits)."""
        b = self._b.get(name)
        if b is None:
            self._b[name] = [self.capacity - tokens, now]
            return
        level = b[0] + (now - b[1]) * self.rate
        b[0] = min(level, self.capacity) - tokens
        b[1] = now

    def drain_taken(self) -> dict[str, int]:
        taken, self.taken = self.taken, {}
        return taken

    def _sweep(self, now: float) -> None:
        """Forget buckets that are full again (forgetting them changes nothing); if none are, the oldest half."""
        full = [n for n, (t, last) in self._b.items() if t + (now - last) * self.rate >= self.capacity]
        for n in full:
            del self._b[n]
        if len(self._b) >= self.max_entries:
            for n in sorted(self._b, key=lambda n: self._b[n][1])[: len(self._b) // 2]:
                del self._b[n]

    def __len__(self) -> int:
        return len(self._b)


class Limiter:
    """The per-key and per-address buckets of one process (either may be off)."""

    __slots__ = ("per_key", "per_ip", "clock")

    def __init__(self, per_key_rps: float, per_ip_rps: float, burst: float, clock=time.monotonic) -> None:
        self.per_key = TokenBuckets(per_key_rps, burst, "key") if per_key_rps > 0 else None
        self.per_ip = TokenBuckets(per_ip_rps, burst, "client address") if per_ip_rps > 0 else None
        self.clock = clock

    def charge(self, key_id: str | None, address: str | None) -> None:
        """Take a token from the address's bucket and the key's; 429 when either is empty."""
        now = self.clock()
        if self.per_ip is not None and address is not None:
            wait = self.per_ip.take(address, now)
            if wait:
                raise _refused(self.per_ip, wait, "client")
        if self.per_key is not None and key_id is not None:
            wait = self.per_key.take(key_id, now)
            if wait:
                raise _refused(self.per_key, wait, "Authorization")


def _refused(buckets: TokenBuckets, wait: float, field: str) -> TooManyRequests:
    return TooManyRequests(f"rate limit of {buckets.rate:g} requests/s per {buckets.what} exceeded; retry in "
                           f"{wait:.2f}s", field=field, retry_after_s=wait)
