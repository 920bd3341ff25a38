"""The fault soak's traffic and its accounting: events through the ingest, recommends through the edge and
tier 2, every answer counted per tier and phase.

Events: each request carries ``VIEWS`` views of a user of its own (so the user's view counter says exactly how
many of them were applied: fewer is a loss, more is a double) plus a few events of other kinds for a shared
pool of users (mixed traffic, not counted). Like a well-behaved client, a request answered 503 (or not
answered: the service is restarting) is sent again, same event ids, after its ``Retry-After``; only a 202
counts as accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
import numpy as np

VIEWS = 20
RETRY_FOR_S = 120.0


class Tally:
    """Answers per tier and phase: status counts, connection failures, latencies."""

    def __init__(self) -> None:
        self.status: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.latency: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(self, tier: str, phase: str, status: int | str, ms: float | None) -> None:
        self.status[(tier, phase)][str(status)] += 1
        if ms is not None:
            self.latency[(tier, phase)].append(ms)

    def report(self) -> dict:
        out: dict = {}
        for (tier, phase), counts in sorted(self.status.items()):
            lat = self.latency.get((tier, phase)) or [float("nan")]
            out.setdefault(tier, {})[phase] = {
                "answers": dict(counts), "p50_ms": round(float(np.percentile(lat, 50)), 1),
                "p99_ms": round(float(np.percentile(lat, 99)), 1),
                "5xx": sum(n for s, n in counts.items() if s[:1] == "5")}
        return out


class Traffic:
    def __init__(self, ingest: str, edge: str, tier2: str, items: list[str], tag: str, rates: dict[str, float]) -> None:
        self.urls = {"ingest": ingest, "edge": edge, "tier2": tier2}
        self.items = items
        self.tag = tag
        self.rates = rates
        self.phase = "steady"
        self.tally = Tally()
        self.accepted: dict[str, int] = {}       # user -> views answered 202
        self.given_up = 0                        # event requests never accepted within RETRY_FOR_S
        self.raw_503 = 0
        self._i = 0
        self._rng = np.random.default_rng(11)

    def _events(self, user: str, n_views: int) -> list[dict]:
        now = int(time.time() * 1000)
        rng = self._rng
        evs = [{"event_id": f"{user}-v{j}", "type": "view", "user_id": user, "session_id": user, "ts": now,
                "channel": "web", "item_id": self.items[int(rng.integers(len(self.items)))]} for j in range(n_views)]
        if n_views == VIEWS:                     # the mixed part (shared users, not counted)
            u = f"{self.tag}-mixed-{int(rng.integers(200))}"
            item = self.items[int(rng.integers(len(self.items)))]
            imp = f"{user}-imp"
            base = {"user_id": u, "session_id": u, "ts": now, "channel": "web"}
            evs += [{**base, "event_id": f"{user}-i", "type": "impression", "impression_id": imp, "items": [item],
                     "explored": [False], "alpha": [1.0], "beta": [9.0], "tier": "edge", "model_version": "soak"},
                    {**base, "event_id": f"{user}-c", "type": "click", "impression_id": imp, "item_id": item},
                    {**base, "event_id": f"{user}-a", "type": "add_to_cart", "item_id": item},
                    {**base, "event_id": f"{user}-p", "type": "purchase", "item_id": item, "quantity": 1,
                     "price": 9.5},
                    {**base, "event_id": f"{user}-s", "type": "search", "query": "soak"}]
        return evs

    async def send_events(self, client: httpx.AsyncClient, user: str, n_views: int = VIEWS) -> bool:
        """POST one request (retrying 503s and unanswered requests); True once answered 202."""
        body = {"events": self._events(user, n_views)}
        deadline = time.monotonic() + RETRY_FOR_S
        while time.monotonic() < deadline:
            phase, t0 = self.phase, time.perf_counter()
            try:
                resp = await client.post(self.urls["ingest"] + "/v1/events", json=body)
            except httpx.HTTPError as exc:
                self.tally.add("ingest", phase, f"no answer ({type(exc).__name__})", None)
                await asyncio.sleep(0.5)
                continue
            self.tally.add("ingest", phase, resp.status_code, (time.perf_counter() - t0) * 1000)
            if resp.status_code == 202:
                self.accepted[user] = n_views
                return True
            if resp.status_code != 503:
                return False                     # a 4xx for a good request: counted, never retried
            self.raw_503 += 1
            await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
        self.given_up += 1
        return False

    async def _recommend(self, client: httpx.AsyncClient, tier: str) -> None:
        rng = self._rng
        self._i += 1
        body = {"user_id": f"{self.tag}-ru{int(rng.integers(500))}", "session_id": f"{self.tag}-rs{int(rng.integers(2000))}",
                "slot": "home", "k": 10}
        if tier == "edge":
            body["candidates"] = [self.items[int(k)] for k in rng.choice(len(self.items), 50, replace=False)]
        phase, t0 = self.phase, time.perf_counter()
        try:
            resp = await client.post(self.urls[tier] + "/v1/recommend", json=body)
            self.tally.add(tier, phase, resp.status_code, (time.perf_counter() - t0) * 1000)
        except httpx.HTTPError as exc:
            self.tally.add(tier, phase, f"no answer ({type(exc).__name__})", None)

    async def run(self, stop: asyncio.Event) -> None:
        """Offer each kind at its rate (open loop) until ``stop``; then wait for the requests in flight."""
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0), limits=limits) as client:
            tasks: set[asyncio.Task] = set()

            async def pace(kind: str, rate: float) -> None:
                n, t0 = 0, time.monotonic()
                while not stop.is_set():
                    if kind == "events":
                        coro = self.send_events(client, f"{self.tag}-u{n}")
                    else:
                        coro = self._recommend(client, kind)
                    task = asyncio.create_task(coro)
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    n += 1
                    await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))

            await asyncio.gather(*(pace(kind, rate) for kind, rate in self.rates.items() if rate > 0))
            await asyncio.gather(*list(tasks), return_exceptions=True)
