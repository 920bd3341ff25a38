"""The scopes a key can hold, and which one each route needs. ``/healthz``, ``/readyz`` and ``/metrics`` need
none (probes and scrapers); fence ``/metrics`` by network (docs/security.md)."""

from __future__ import annotations

RECOMMEND = "recommend"
EVENTS = "events"
EXPLAIN = "explain"
CATALOG_WRITE = "catalog:write"
ADMIN = "admin"
SCOPES = (RECOMMEND, EVENTS, EXPLAIN, CATALOG_WRITE, ADMIN)

ROUTE_SCOPES = {
    "/v1/recommend": RECOMMEND,
    "/v1/events": EVENTS,
    "/v1/explain": EXPLAIN,
    "/v1/items": CATALOG_WRITE,
}
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"recommend,events"`` -> ``("recommend", "events")``; an unknown or empty list is a ValueError naming
    the valid ones."""
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not scopes:
        raise ValueError(f"name at least one scope of {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; scopes are {', '.join(SCOPES)}")
    return scopes
