"""The router's instruments (names are a contract: the SRE rules and dashboard read them).

- ``strata_router_requests_total{target,outcome}``: escalation decisions per upper tier; ``answered`` is an
  escalation the upper tier served, then ``timeout``, ``error``, ``breaker_open``, ``budget``,
  ``guardrails`` (its answer kept nothing after the recheck), ``cached`` (a cached answer of the upper
  tier served again); a background fetch counts once, by how it ended;
- ``strata_router_upstream_seconds{target}``: latency of the upstream calls that answered;
- ``strata_router_breaker_open{target,endpoint}``: 1 while the endpoint's breaker is open or half-open;
- ``strata_router_escalation_share``: escalations admitted / requests seen over the admission window;
- ``strata_router_guardrail_removed_total{target}``: items of upper-tier answers the recheck removed.
"""

from __future__ import annotations

from collections.abc import Callable

from strata.shared.serving.metrics import Histogram, Instruments

OUTCOMES = ("answered", "timeout", "error", "breaker_open", "budget", "guardrails", "cached")
UPSTREAM_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)


class RouterMetrics:
    def __init__(self, targets: dict[str, list[tuple[str, Callable[[], bool]]]], share: Callable[[], float]) -> None:
        """``targets``: per upper tier, (endpoint URL, is its breaker open?) for each endpoint."""
        m = self.inst = Instruments("strata_router")
        m.define("requests_total", "escalation decisions by upper tier and outcome", ("target", "outcome"))
        m.define("upstream_seconds", "latency of upstream calls that answered", ("target",))
        m.define("breaker_open", "1 while the endpoint's circuit breaker is open or half-open", ("target", "endpoint"))
        m.define("escalation_share", "escalations admitted / requests seen over the admission window")
        m.define("guardrail_removed_total", "items of upper-tier answers removed by this tier's guardrails",
                 ("target",))
        self.counters = m.counters
        for target in targets:
            for outcome in OUTCOMES:            # every series exists from the start (rates need a zero)
                m.counters[("requests_total", (target, outcome))] = 0.0
        self.latency = {t: m.histograms.setdefault(("upstream_seconds", (t,)), Histogram(UPSTREAM_BUCKETS_S))
                        for t in targets}
        m.gauge("breaker_open", lambda: [((t, url), 1.0 if is_open() else 0.0)
                                         for t, eps in targets.items() for url, is_open in eps])
        m.gauge("escalation_share", lambda: [((), share())])

    def outcome(self, target: str, outcome: str) -> None:
        key = ("requests_total", (target, outcome))
        c = self.counters
        c[key] = c.get(key, 0.0) + 1

    def removed(self, target: str, n: int) -> None:
        self.inst.inc("guardrail_removed_total", (target,), n)

    def exposition(self) -> bytes:
        return self.inst.exposition()
