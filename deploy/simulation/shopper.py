"""Simulated shoppers browsing the running system, one asyncio task per (policy, shopper).

A shopper's sessions follow the world's habits (channel, device, hour, a geometric number of pages). On each
page it asks for k items, looks at them with position bias, clicks with the world's true probability, and
a click may lead to a product view, an add to cart and a purchase (the world's odds). Those events, with the
answer's ``impression_id``, go to the ingest API at once, so the stream updates the session vector and the
bandit counts the next page is ranked with. Between pages it thinks (exponential, ``think_s`` on average).

Common random numbers: shopper i draws its sessions and its click/cart/purchase uniforms from the same
seeded streams under every policy, so policies differ only by what they showed.

The probe (for the frontier and the reliability table) is one more group of the same shoppers on the
router-off edge, under its own tenant; for each of its requests the origin (and tier 2, once the session has
a vector) is asked the same request, and every answer's expected CTR is recorded: the shopper only ever
sees and reacts to the edge's answer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson

from strata.deploy.simulation.policies import SLOT, Served, ask, popular, random_items, request_body
from strata.deploy.simulation.truth import Truth, Visit, dcg, examination

PROBE = "probe"


@dataclass(slots=True)
class Step:
    """One page served to one shopper, scored against the truth."""

    policy: str
    t_s: float
    latency_ms: float | None
    tier: str | None
    degraded: bool
    error: bool
    expected_ctr: float        # mean true click probability of the items shown
    clicks: int
    shown: int
    ndcg: float                # DCG of the true probabilities as ranked / DCG of the oracle's
    oracle_ctr: float          # mean true click probability of the oracle's k
    warm: bool = False         # the session had clicks before this page (the stream wrote its vector)
    server_ms: float | None = None


@dataclass(slots=True)
class ProbeStep:
    t_s: float
    confidence: float
    session_known: bool        # the session had clicks before this page (the stream wrote its vector)
    route_tier: str | None     # where the edge's router would send it at the configured t_edge
    edge_ctr: float
    origin_ctr: float | None
    streaming_ctr: float | None


@dataclass
class Run:
    """What every shopper task shares: the truth, the clients, the clock and what was recorded."""

    truth: Truth
    seed: int
    k: int
    think_s: float
    duration_s: float
    run_id: str
    clients: dict[str, httpx.AsyncClient]          # policy name (and "events") -> client
    shadow: dict[str, httpx.AsyncClient]           # the probe's shadow requests: "origin", "streaming"
    steps: list[Step] = field(default_factory=list)
    probes: list[ProbeStep] = field(default_factory=list)
    event_errors: int = 0
    events_sent: int = 0
    t0: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def over(self) -> bool:
        return self.now() >= self.duration_s

    def tenant(self, policy: str) -> str:
        return f"sim-{self.run_id}-{policy}"


def _p_shown(truth: Truth, shopper: int, visit: Visit, items: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(true probability per shown position (0 for an id the world does not know), catalog row or -1)."""
    rows = np.array([truth.row.get(i, -1) for i in items], dtype=np.int64)
    p = np.zeros(rows.shape[0])
    known = rows >= 0
    if known.any():
        p[known] = truth.p_true(shopper, visit, rows[known])
    return p, rows


def score(truth: Truth, shopper: int, visit: Visit, items: list[str], oracle: np.ndarray) -> tuple[float, float,
                                                                                                   np.ndarray,
                                                                                                   np.ndarray]:
    """(expected CTR, NDCG@k, true p per position, rows) of ``items`` for this shopper now."""
    p, rows = _p_shown(truth, shopper, visit, items)
    if not items:
        return 0.0, 0.0, p, rows
    ideal = dcg(oracle)
    return float(p.mean()), (dcg(p) / ideal if ideal > 0 else 0.0), p, rows


def _events(run: Run, tenant: str, user_id: str, visit: Visit, served: Served, rows: np.ndarray,
            clicked: np.ndarray, carts: np.ndarray, buys: np.ndarray) -> list[dict]:
    now = int(time.time() * 1000)
    base = {"tenant": tenant, "user_id": user_id, "session_id": visit.session_id, "channel": visit.context["channel"],
            "slot": SLOT}
    out = []
    for pos in np.flatnonzero(clicked).tolist():
        item = served.items[pos]
        click = {**base, "event_id": uuid.uuid4().hex, "type": "click", "ts": now, "item_id": item}
        if served.impression_id:
            click["impression_id"] = served.impression_id
        out.append(click)
        out.append({**base, "event_id": uuid.uuid4().hex, "type": "view", "ts": now + 1, "item_id": item})
        if carts[pos]:
            out.append({**base, "event_id": uuid.uuid4().hex, "type": "add_to_cart", "ts": now + 2, "item_id": item})
            if buys[pos]:
                out.append({**base, "event_id": uuid.uuid4().hex, "type": "purchase", "ts": now + 3,
                            "item_id": item, "quantity": 1, "price": run.truth.price(int(rows[pos]))})
    return out


async def _send(run: Run, events: list[dict]) -> None:
    if not events:
        return
    try:
        resp = await run.clients["events"].post("/v1/events", content=orjson.dumps({"events": events}),
                                                headers={"Content-Type": "application/json"})
        if resp.status_code >= 300:
            run.event_errors += len(events)
            return
        run.events_sent += len(events)
    except httpx.HTTPError:
        run.event_errors += len(events)


class Shopper:
    """Shopper ``index`` under one policy."""

    def __init__(self, run: Run, policy: str, index: int) -> None:
        self.run = run
        self.policy = policy
        self.index = index
        self.user_id = str(run.truth.shoppers.user_id[index])
        self.tenant = run.tenant(policy)
        self.sessions = np.random.default_rng([run.seed, index, 1])
        self.uniforms = np.random.default_rng([run.seed, index, 2])
        self.clock = np.random.default_rng([run.seed, index, 3])
        self.floor_rng = np.random.default_rng([run.seed, index, 4])
        self._oracle: tuple[tuple[str, int], np.ndarray] | None = None

    def oracle(self, visit: Visit) -> np.ndarray:
        key = (visit.session_id, visit.clicked)      # the truth changes only with the session's clicks
        if self._oracle is None or self._oracle[0] != key:
            self._oracle = (key, self.run.truth.oracle(self.index, visit, self.run.k))
        return self._oracle[1]

    async def serve(self, visit: Visit) -> Served:
        run, k = self.run, self.run.k
        if self.policy == "popular":
            return popular(run.truth, visit, k)
        if self.policy == "random":
            return random_items(run.truth, self.floor_rng, k)
        body = request_body(self.tenant, self.user_id, visit, k)
        client = run.clients["edge" if self.policy == PROBE else self.policy]
        served = await ask(client, body)
        if self.policy == PROBE and served.error is None:
            await self._shadow(visit, body, served)
        return served

    async def _shadow(self, visit: Visit, body: dict, served: Served) -> None:
        """The same request to the origin (and tier 2 once the session has a vector); nobody sees these."""
        run = self.run
        oracle = self.oracle(visit)
        known = visit.clicked > 0
        asks: dict[str, Awaitable[Served]] = {}
        if "origin" in run.shadow:
            asks["origin"] = ask(run.shadow["origin"], body)
        if known and "streaming" in run.shadow:
            asks["streaming"] = ask(run.shadow["streaming"], body)
        answers = dict(zip(asks, await asyncio.gather(*asks.values()), strict=True))

        def ctr(name: str) -> float | None:
            a = answers.get(name)
            if a is None:
                return None
            return 0.0 if a.error is not None else score(run.truth, self.index, visit, a.items, oracle)[0]

        edge_ctr = score(run.truth, self.index, visit, served.items, oracle)[0]
        run.probes.append(ProbeStep(run.now(), float(served.confidence or 0.0), known, served.route_tier, edge_ctr,
                                    ctr("origin"), ctr("streaming")))

    async def browse(self) -> None:
        run = self.run
        await asyncio.sleep(float(self.clock.uniform(0.0, run.think_s)))   # arrivals spread over the first think
        n = 0
        while not run.over():
            visit = run.truth.visit(self.index, self.sessions, f"{self.tenant}-{self.index}-{n}")
            n += 1
            for _ in range(visit.steps):
                if run.over():
                    return
                await self.page(visit)
                await asyncio.sleep(float(self.clock.exponential(run.think_s)))
            await asyncio.sleep(float(self.clock.exponential(run.think_s * 2)))

    async def page(self, visit: Visit) -> None:
        run, truth, k = self.run, self.run.truth, self.run.k
        t = run.now()
        oracle = self.oracle(visit)
        served = await self.serve(visit)
        u_click, u_cart, u_buy = self.uniforms.random((3, k))        # always k of each: streams stay aligned
        ectr, ndcg, p, rows = score(truth, self.index, visit, served.items, oracle)
        n = len(served.items)
        clicked = u_click[:n] < examination(n) * p
        if self.policy != PROBE:
            run.steps.append(Step(self.policy, t, served.latency_ms, served.tier, served.degraded,
                                  served.error is not None, ectr, int(clicked.sum()), n, ndcg,
                                  float(oracle.mean()) if oracle.size else 0.0, visit.clicked > 0, served.server_ms))
        if not clicked.any():
            return
        known = rows >= 0
        carts = np.zeros(n, dtype=bool)
        carts[known] = u_cart[:n][known] < truth.cart(self.index, rows[known])
        buys = carts & (u_buy[:n] < truth.purchase_given_cart)
        if served.tier is not None:       # the floors' state is read by no tier: nothing to send
            await _send(run, _events(run, self.tenant, self.user_id, visit, served, rows, clicked, carts, buys))
        truth.click(visit, rows[clicked & known], np.ones(int((clicked & known).sum()), dtype=bool))

