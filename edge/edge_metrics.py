"""Edge instruments: latency and status by route, stage latency, cache hits, exploration, guardrails,
store health, model version.

It reads nothing it is not handed: components push events (``answered``, ``ranked``, ``reload`` ...)
and ``bind`` gives it the callables and histograms it reads at scrape time. It holds no reference to
the node, the service or the model slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from strata.shared.ranking.guardrails import REASONS
from strata.shared.serving.metrics import Histogram, Instruments

RECOMMEND = "/v1/recommend"
Counts = Callable[[], tuple[int, int]]          # () -> (hits, misses)


class EdgeMetrics:
    def __init__(self) -> None:
        m = self.inst = Instruments("strata_edge")
        m.define("request_seconds", "server-side request latency", ("route",))
        m.define("requests_total", "answers by route and status", ("route", "status"))
        m.define("stage_seconds", "latency of each request-path stage (sampled requests)", ("stage",))
        m.define("degraded_total", "answers given with degraded=true (store unavailable)")
        m.define("items_served_total", "items returned by the ranker (cache misses)")
        m.define("items_explored_total", "returned items placed by exploration (cache misses)")
        m.define("items_filled_total", "items filled from the pool after guardrails left fewer than k")
        m.define("unknown_candidates_total", "candidate ids not in the bundle (cold prior)")
        m.define("guardrail_removed_total", "candidates removed by the guardrails, by reason", ("reason",))
        m.define("reloads_total", "model reload attempts", ("result",))
        m.define("policy_reloads_total", "guardrail policy reloads from the config file", ("result",))
        m.define("cache_hit_ratio", "hit ratio per cache", ("cache",))
        m.define("cache_requests_total", "cache lookups", ("cache", "result"))
        m.define("store_errors_total", "online-store errors (timeouts, connection failures)")
        m.define("store_up", "1 if the online store is reachable (or not configured)")
        m.define("exploration_rate", "explored / served items since start")
        m.define("model_info", "live model version", ("version",))
        m.define("bandit_refresh_seconds", "one background refresh of every tracked slot's counts")
        m.define("bandit_slots_tracked", "slots whose counts the last refresh read")
        m.define("bandit_fields_read_total", "count fields read from the store by the refresher")
        m.define("store_probes_total", "store health probes (PING) while the store was down or suspect")
        m.define("http_connections", "open HTTP connections (the edge's own server)")
        m.define("http_connections_refused_total", "connections refused at the connection cap (503)")
        m.define("impressions_logged_total", "impression events the log acknowledged")
        m.define("impressions_dropped_total", "impression events dropped (buffer full or the log down); "
                 "the answers were served regardless")
        m.define("impressions_buffered", "impression events waiting to be sent")
        m.define("impression_log_up", "1 if the last send to the log succeeded")
        m.define("http_request_timeouts_total", "requests whose headers or body did not arrive in time (408)")
        self._hist = m.histogram("request_seconds", (RECOMMEND,))
        self._ok = ("requests_total", (RECOMMEND, "200"))
        self._version = ""
        self._slots_tracked = 0
        self._removed = np.zeros(len(REASONS), dtype=np.int64)      # per guardrails reason code (per item)
        self._removed_sole = [0] * len(REASONS)                      # the same, one reason per request (hot path)
        m.gauge("guardrail_removed_total", lambda: [((REASONS[code],), float(n))
                                                    for code, n in enumerate(self._removed_counts()) if code and n],
                counter=True)
        self._refresh = m.histogram("bandit_refresh_seconds")
        m.gauge("bandit_slots_tracked", lambda: [((), float(self._slots_tracked))])
        m.gauge("exploration_rate", self._exploration)
        m.gauge("model_info", lambda: [((self._version,), 1.0)] if self._version else [])

    def bind(self, *, response_cache: Counts, session_cache: Counts, store_up: Callable[[], bool],
             store_errors: Callable[[], int], stages: Mapping[str, Histogram],
             store_probes: Callable[[], int] = lambda: 0) -> None:
        """What the scrape reads: cache counters, store health, the pipeline's stage histograms."""
        m = self.inst
        m.gauge("cache_hit_ratio", lambda: [(("response",), _ratio(response_cache())),
                                            (("session",), _ratio(session_cache()))])
        m.gauge("cache_requests_total", lambda: [
            (("response", "hit"), float(response_cache()[0])), (("response", "miss"), float(response_cache()[1])),
            (("session", "hit"), float(session_cache()[0])), (("session", "miss"), float(session_cache()[1]))],
            counter=True)
        m.gauge("store_errors_total", lambda: [((), float(store_errors()))], counter=True)
        m.gauge("store_up", lambda: [((), 1.0 if store_up() else 0.0)])
        m.gauge("store_probes_total", lambda: [((), float(store_probes()))], counter=True)
        for name, hist in stages.items():
            m.histograms[("stage_seconds", (name,))] = hist

    def bind_server(self, *, connections: Callable[[], int], refused: Callable[[], int],
                    timed_out: Callable[[], int]) -> None:
        """What the edge's own HTTP server exposes (uvicorn keeps its connections to itself)."""
        m = self.inst
        m.gauge("http_connections", lambda: [((), float(connections()))])
        m.gauge("http_connections_refused_total", lambda: [((), float(refused()))], counter=True)
        m.gauge("http_request_timeouts_total", lambda: [((), float(timed_out()))], counter=True)

    def bind_impressions(self, log) -> None:
        """The impression log's counters (``shared.serving.impression_log.ImpressionLog``), read at scrape time."""
        m = self.inst
        m.gauge("impressions_logged_total", lambda: [((), float(log.logged))], counter=True)
        m.gauge("impressions_dropped_total", lambda: [((), float(log.dropped))], counter=True)
        m.gauge("impressions_buffered", lambda: [((), float(len(log.buffer)))])
        m.gauge("impression_log_up", lambda: [((), 1.0 if log.connected else 0.0)])

    def _exploration(self) -> list[tuple[tuple, float]]:
        c = self.inst.counters
        served = c.get(("items_served_total", ()), 0.0)
        return [((), c.get(("items_explored_total", ()), 0.0) / served if served else 0.0)]

    # -- events -------------------------------------------------------------------------------------
    def answered(self, route: str, status: int, t0_ns: int) -> None:
        """Every answer a front door gives, with its real status (recommend hot path: two updates)."""
        seconds = (time.perf_counter_ns() - t0_ns) / 1e9
        c = self.inst.counters
        if route == RECOMMEND:
            self._hist.observe(seconds)
            key = self._ok if status == 200 else ("requests_total", (RECOMMEND, str(status)))
        else:
            self.inst.histogram("request_seconds", (route,)).observe(seconds)
            key = ("requests_total", (route, str(status)))
        c[key] = c.get(key, 0.0) + 1

    def ranked(self, n_items: int, explored: int, unknown: int, filled: int) -> None:
        self.inst.inc("items_served_total", by=n_items)
        if explored:
            self.inst.inc("items_explored_total", by=explored)
        if unknown:
            self.inst.inc("unknown_candidates_total", by=unknown)
        if filled:
            self.inst.inc("items_filled_total", by=filled)

    def degraded(self) -> None:
        self.inst.inc("degraded_total")

    def removed(self, reason: int, n: int) -> None:
        self._removed_sole[reason] += n

    def _removed_counts(self) -> list[int]:
        return [a + b for a, b in zip(self._removed.tolist(), self._removed_sole, strict=True)]

    def removed_codes(self, reason_codes: np.ndarray) -> None:
        self._removed += np.bincount(reason_codes, minlength=len(REASONS))

    def bandit_refresh(self, slots: int, fields: int, seconds: float) -> None:
        self._slots_tracked = slots
        self._refresh.observe(seconds)
        self.inst.inc("bandit_fields_read_total", by=fields)

    def model_loaded(self, version: str) -> None:
        self._version = version

    def reload(self, result: str) -> None:
        self.inst.inc("reloads_total", (result,))

    def policy_reload(self, result: str) -> None:
        self.inst.inc("policy_reloads_total", (result,))

    def exposition(self) -> bytes:
        return self.inst.exposition()


def _ratio(counts: tuple[int, int]) -> float:
    hits, misses = counts
    total = hits + misses
    return hits / total if total else 0.0
