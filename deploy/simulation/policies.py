"""Who answers a simulated shopper's request, per policy.

- ``routed``: the edge with its router as configured (``strata up``'s edge: ``router.streaming_urls`` and
  ``router.origin_urls`` point at tier 2 and the origin); ``tier`` in each answer says who answered.
- ``edge``: an edge node with both upstream lists empty (the router off): it answers everything itself.
- ``streaming`` / ``origin``: that tier's own ``POST /v1/recommend`` (the same contract), always.
- ``popular``: the export's popular items of the session's channel; ``random``: k servable items at random.
  Both are floors computed here, no tier involved (no latency, no events sent: no tier reads their state).
Every HTTP policy is called over its own keep-alive connection pool, JSON both ways, timed by the client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson

from strata.deploy.simulation.truth import Truth, Visit

POLICIES = ("routed", "edge", "streaming", "origin", "popular", "random")
HTTP_POLICIES = ("routed", "edge", "streaming", "origin")
SLOT = "home"


@dataclass(slots=True)
class Served:
    """One answer as the shopper sees it."""

    items: list[str]
    tier: str | None = None            # None: a floor (no tier answered)
    degraded: bool = False
    confidence: float | None = None
    route_tier: str | None = None
    route_reasons: list[str] = field(default_factory=list)
    impression_id: str | None = None
    latency_ms: float | None = None
    server_ms: float | None = None     # the answer's own timing.server_us: the tier's time without the network
    error: str | None = None


def request_body(tenant: str, user_id: str, visit: Visit, k: int) -> dict:
    return {"tenant": tenant, "user_id": user_id, "session_id": visit.session_id, "slot": SLOT, "k": k,
            "context": visit.context}


async def ask(http: httpx.AsyncClient, body: dict) -> Served:
    """``POST /v1/recommend`` on ``http``'s base URL; a failure is an answer with ``error`` and no items."""
    t0 = time.perf_counter()
    try:
        resp = await http.post("/v1/recommend", content=orjson.dumps(body),
                               headers={"Content-Type": "application/json", "Accept": "application/json"})
        ms = (time.perf_counter() - t0) * 1000.0
        if resp.status_code != 200:
            return Served([], latency_ms=ms, error=f"HTTP {resp.status_code}: {resp.text[:200]}")
        b = orjson.loads(resp.content)
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        return Served([], latency_ms=(time.perf_counter() - t0) * 1000.0, error=f"{type(exc).__name__}: {exc}")
    server_us = (b.get("timing") or {}).get("server_us")
    return Served([str(it["item_id"]) for it in b.get("items", [])], b.get("tier"), bool(b.get("degraded")),
                  b.get("confidence"), b.get("route_tier"), list(b.get("route_reasons") or []),
                  b.get("impression_id"), ms, server_us / 1000.0 if isinstance(server_us, int | float) else None)


def _capped(truth: Truth, rows: np.ndarray, k: int) -> list[str]:
    """The first ``k`` of ``rows`` (in order) that are servable, at most ``max_per_category`` per category."""
    out: list[str] = []
    per_cat: dict[int, int] = {}
    ids = truth.world.catalog.item_id
    for r in rows.tolist():
        if not truth.servable[r]:
            continue
        c = int(truth.category[r])
        if per_cat.get(c, 0) >= truth.max_per_category:
            continue
        per_cat[c] = per_cat.get(c, 0) + 1
        out.append(str(ids[r]))
        if len(out) == k:
            break
    return out


def popular(truth: Truth, visit: Visit, k: int) -> Served:
    pool = truth.pools.get(visit.context["channel"]) or truth.pools["default"]
    rows, _ = truth.rows_of(pool)
    return Served(_capped(truth, rows, k))


def random_items(truth: Truth, rng: np.random.Generator, k: int) -> Served:
    rows = rng.permutation(np.flatnonzero(truth.servable))[:k * 4]
    return Served(_capped(truth, rows, k))
