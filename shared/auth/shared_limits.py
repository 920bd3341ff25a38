"""Rate limits shared by the processes of a regional tier through the store.

Every process keeps deciding locally (``limits.Limiter``, no I/O on the request path). Every ``sync_s`` it adds
what it took per bucket to the store, in a hash per bucket and one-second window (one field per process,
``HINCRBY``, expiring after a few seconds), and reads the current and the previous window back: what the other
processes took there, and this process has not debited yet, is debited from its local bucket. So N processes
together let through about ``rate`` per key (or address), overshooting by at most what they take within one
sync interval; a process that meets a bucket for the first time debits the others' last one to two seconds. A
store that is down leaves each process on its own buckets (logged once; the limit then holds per process).

Keys: ``strata:{<tenant>}:rl:key:<key id>:<window>`` (a key's buckets belong to its tenant) and
``strata:rl:ip:<address>:<window>``. Plain pipelined commands, no script: each key is on its own cluster slot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from strata.shared.auth.limits import Limiter, TokenBuckets
from strata.shared.online_store.client import connect

logger = logging.getLogger(__name__)
PREFIX = "strata"
EXPIRE_MS = 5_000


def bucket_key(kind: str, name: str, window: int) -> str:
    if kind == "key":
        tenant, _, key_id = name.rpartition(":")
        return f"{PREFIX}:{{{tenant}}}:rl:key:{key_id}:{window}"
    return f"{PREFIX}:rl:ip:{name}:{window}"


class SharedBuckets:
    def __init__(self, limiter: Limiter, url: str, sync_s: float, timeout_s: float = 0.25,
                 clock=time.time) -> None:
        self.limiter = limiter
        self.sync_s = sync_s
        self.node = os.urandom(6).hex()
        self.clock = clock
        self._r = connect(url, timeout_s, field="rate_limit (store)")
        self._seen: dict[tuple[str, str, int], int] = {}   # (kind, name, window) -> others' takes debited
        self.failures = 0
        self.syncs = 0

    @property
    def configured(self) -> bool:
        return self._r is not None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            await self.sync_once()

    async def sync_once(self) -> None:
        work: list[tuple[str, TokenBuckets, dict[str, int]]] = []
        for kind, buckets in (("key", self.limiter.per_key), ("ip", self.limiter.per_ip)):
            if buckets is not None:
                taken = buckets.drain_taken()
                if taken:
                    work.append((kind, buckets, taken))
        if not work or self._r is None:
            return
        window = int(self.clock())
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for kind, _, taken in work:
                    for name, n in taken.items():
                        key = bucket_key(kind, name, window)
                        pipe.hincrby(key, self.node, n)
                        pipe.pexpire(key, EXPIRE_MS)
                        pipe.hgetall(key)
                        pipe.hgetall(bucket_key(kind, name, window - 1))
                results = await pipe.execute()
        except Exception as exc:       # the limit then holds per process; the takes are not re-sent
            if not self.failures:
                logger.warning("rate limits not shared (store unreachable): %s: %s", type(exc).__name__, exc)
            self.failures += 1
            return
        self.syncs += 1
        now = time.monotonic()
        node = self.node.encode()
        seen = self._seen
        i = 0
        for kind, buckets, taken in work:
            for name in taken:
                debit = 0
                for w, fields in ((window, results[i + 2]), (window - 1, results[i + 3])):
                    others = sum(int(v) for f, v in fields.items() if f != node)
                    before = seen.get((kind, name, w), 0)
                    if others > before:
                        debit += others - before
                        seen[(kind, name, w)] = others
                i += 4
                if debit:
                    buckets.debit(name, debit, now)
        if len(seen) > 100_000 or self.syncs % 64 == 0:      # keep only the live windows
            self._seen = {k: v for k, v in seen.items() if k[2] >= window - 1}

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()
