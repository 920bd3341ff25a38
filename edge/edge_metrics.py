"""Edge instruments: latency by route, cache hit ratios, exploration rate, store errors, model version."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared.metrics import Instruments

if TYPE_CHECKING:
    from edge.ranker import RankResult
    from edge.service import EdgeService


class EdgeMetrics:
    def __init__(self, svc: EdgeService) -> None:
        m = self.inst = Instruments("strata_edge")
        m.define("request_seconds", "server-side request latency", ("route",))
        m.define("requests_total", "requests by route and status", ("route", "status"))
        m.define("degraded_total", "answers given with degraded=true (store unavailable)")
        m.define("items_served_total", "items returned by the ranker (cache misses)")
        m.define("items_explored_total", "returned items placed by exploration (cache misses)")
        m.define("unknown_candidates_total", "candidate ids not in the bundle (cold prior)")
        m.define("reloads_total", "model reload attempts", ("result",))
        m.define("cache_hit_ratio", "hit ratio per cache", ("cache",))
        m.define("cache_requests_total", "cache lookups", ("cache", "result"))
        m.define("store_errors_total", "online-store errors (timeouts, connection failures)")
        m.define("store_up", "1 if the online store is reachable (or not configured)")
        m.define("exploration_rate", "explored / served items since start")
        m.define("model_info", "live model version", ("version",))
        self._hist = m.histogram("request_seconds", ("/v1/recommend",))
        self._ok = ("requests_total", ("/v1/recommend", "200"))
        self._version = ""
        self._session_hits = 0
        self._session_misses = 0
        m.gauge("cache_hit_ratio", lambda: [(("response",), self._response_ratio(svc)),
                                            (("session",), self._session_ratio())])
        m.gauge("store_errors_total", lambda: [((), float(svc.health.errors))], counter=True)
        m.gauge("store_up", lambda: [((), 1.0 if svc.health.up else 0.0)])
        m.gauge("exploration_rate", self._exploration)
        m.gauge("model_info", lambda: [((self._version,), 1.0)] if self._version else [])
        m.gauge("cache_requests_total", lambda: [
            (("response", "hit"), float(self._response_hits(svc))), (("response", "miss"), float(svc.responses.misses)),
            (("session", "hit"), float(self._session_hits)), (("session", "miss"), float(self._session_misses))],
            counter=True)

    @staticmethod
    def _response_hits(svc: EdgeService) -> int:
        """Exact-body hits plus hits on the semantic key (exact misses fall through to the latter)."""
        return svc.responses.hits + (svc.exact.hits if svc.exact else 0)

    def _response_ratio(self, svc: EdgeService) -> float:
        hits = self._response_hits(svc)
        total = hits + svc.responses.misses
        return hits / total if total else 0.0

    def _session_ratio(self) -> float:
        total = self._session_hits + self._session_misses
        return self._session_hits / total if total else 0.0

    def _exploration(self) -> list[tuple[tuple, float]]:
        c = self.inst.counters
        served = c.get(("items_served_total", ()), 0.0)
        return [((), c.get(("items_explored_total", ()), 0.0) / served if served else 0.0)]

    def request(self, status: int, t0_ns: int, degraded: bool = False) -> None:
        self._hist.observe((time.perf_counter_ns() - t0_ns) / 1e9)
        c = self.inst.counters
        key = self._ok if status == 200 else ("requests_total", ("/v1/recommend", str(status)))
        c[key] = c.get(key, 0.0) + 1
        if degraded:
            self.inst.inc("degraded_total")

    def ranked(self, res: RankResult) -> None:
        self.inst.inc("items_served_total", by=len(res.items))
        if res.explored:
            self.inst.inc("items_explored_total", by=res.explored)
        if res.unknown_candidates:
            self.inst.inc("unknown_candidates_total", by=res.unknown_candidates)

    def session_cache(self, hit: bool) -> None:
        if hit:
            self._session_hits += 1
        else:
            self._session_misses += 1

    def model_loaded(self, version: str) -> None:
        self._version = version

    def route(self, route: str, status: int, t0_ns: int) -> None:
        self.inst.histogram("request_seconds", (route,)).observe((time.perf_counter_ns() - t0_ns) / 1e9)
        self.inst.inc("requests_total", (route, str(status)))
