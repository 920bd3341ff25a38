"""What ``strata demo`` shows of tier 2: a click changes the next answer for that session, and how long the
event took to become the session's vector in the store.

A fresh session asks the edge and tier 2 (no vector yet: popular items), clicks one of the items it was
shown (``POST /v1/events`` on the ingest API, with the impression id), then the store is polled until
the processor wrote the session's vector (the delay is measured here, by a reader, from the moment the
click was sent) and the edge is asked until its answer uses it (the processor's invalidation drops the
edge's cached vector and answers). Both tiers' answers before and after are shown in one table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import redis
from rich.markup import escape
from rich.table import Table

from strata.deploy.sample_traffic import TENANT, DemoBundle
from strata.shared.keys import bandit_key, session_key

CLICK_SESSION = "demo-click"
BODY = {"tenant": TENANT, "user_id": "user-demo-click", "session_id": CLICK_SESSION, "slot": "home", "k": 5,
        "context": {"channel": "web", "device": "desktop", "hour": 10}}


@dataclass
class Freshness:
    edge_before: dict
    tier2_before: dict
    clicked: str
    vector_ms: float               # click sent -> session vector readable in the store
    edge_after_ms: float           # click sent -> the edge's answer uses the new vector
    edge_after: dict
    tier2_after: dict
    impressions_counted: int       # items with n: counts in the store (the edge's logged impressions)


def _uses_session(answer: dict) -> bool:
    """Ranked anew (not a cached answer) with a session vector."""
    return (answer.get("timing") or {}).get("cache") == "miss" and \
        "no_session_vector" not in answer.get("route_reasons", ())


def _post(http: httpx.Client, url: str, body: dict) -> dict:
    resp = http.post(url, json=body)
    resp.raise_for_status()
    return resp.json()


def wait_for_impressions(store: redis.Redis, timeout_s: float = 30.0) -> int:
    """Items with impression counts in the store, once the processor counted the edge's logged impressions."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = sum(1 for f in store.hkeys(bandit_key(TENANT, "home")) if f.startswith(b"n:"))
        if n or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def click_changes_answer(host: str, edge_port: int, streaming_port: int, store: redis.Redis,
                         timeout_s: float = 15.0) -> Freshness:
    counted = wait_for_impressions(store)
    with httpx.Client(timeout=10.0) as http:
        edge = f"http://{host}:{edge_port}/v1/recommend"
        tier2 = f"http://{host}:{streaming_port}/v1/recommend"
        before = _post(http, edge, BODY)
        t2_before = _post(http, tier2, BODY)
        clicked = before["items"][0]["item_id"]
        key = session_key(TENANT, CLICK_SESSION)
        event = {"event_id": f"demo-click-{time.time_ns()}", "type": "click", "tenant": TENANT,
                 "user_id": BODY["user_id"], "session_id": CLICK_SESSION, "ts": int(time.time() * 1000),
                 "channel": "web", "item_id": clicked, "impression_id": before["impression_id"]}
        t0 = time.perf_counter()
        _post(http, f"http://{host}:{streaming_port}/v1/events", event)
        deadline = t0 + timeout_s
        while store.hget(key, "vec") is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no session vector in the store {timeout_s}s after the click")
            time.sleep(0.002)
        vector_ms = (time.perf_counter() - t0) * 1000
        while True:
            after = _post(http, edge, BODY)
            if _uses_session(after):
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the edge did not use the new session vector within {timeout_s}s")
            time.sleep(0.005)
        edge_after_ms = (time.perf_counter() - t0) * 1000
        t2_after = _post(http, tier2, BODY)
    return Freshness(before, t2_before, clicked, vector_ms, edge_after_ms, after, t2_after, counted)


def freshness_table(f: Freshness, bundle: DemoBundle, top: int = 3) -> Table:
    t = Table(title=f"tier 2: a click changes the next answer (session {CLICK_SESSION!r})", show_lines=True)
    for col in ("step", "tier", "top items (* explored)", "route_reasons"):
        t.add_column(col)

    def row(step: str, ans: dict) -> None:
        lines = [escape(f"{'*' if it.get('explored') else ''}{it['item_id']} {bundle.titles.get(it['item_id'], '?')}")
                 for it in ans["items"][:top]]
        t.add_row(step, str(ans.get("tier")), "\n".join(lines), escape(", ".join(ans.get("route_reasons", []))))

    row("before", f.edge_before)
    row("before", f.tier2_before)
    t.add_row("click", "ingest", escape(f"{f.clicked} {bundle.titles.get(f.clicked, '?')}"),
              f"processed; vector in {f.vector_ms:.0f} ms")
    row("after", f.edge_after)
    row("after", f.tier2_after)
    return t


def freshness_summary(f: Freshness) -> str:
    return (f"event -> session vector in the store {f.vector_ms:.0f} ms, -> edge answer changed "
            f"{f.edge_after_ms:.0f} ms (click sent -> vector readable / edge answer using it, measured here); "
            f"the edge logs an impression per answer: the processor counted impressions of "
            f"{f.impressions_counted} items before the click")
