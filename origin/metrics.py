"""The origin's Prometheus instruments: answers by route and status, stage latencies, removals by reason,
degraded answers by reason, reasoner answers and fallbacks by reason, ranked answers by the model that
scored them (``ranker``, ``previous_ranker``, ``retrieval_order``, ``edge_scorer``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from strata.shared.serving.metrics import Histogram, Instruments


class OriginMetrics:
    def __init__(self) -> None:
        m = self.m = Instruments("strata_origin")
        m.define("requests", "answers by route and status", ("route", "status"))
        m.define("request_seconds", "server time per answer", ("route",))
        m.define("removed", "candidates removed by the filters, by reason", ("reason",))
        m.define("degraded", "degraded answers by route reason", ("reason",))
        m.define("stage_seconds", "time per pipeline stage (sampled)", ("route", "stage"))
        m.define("reasoner_fallbacks", "explanations the template wrote instead of the LLM, by reason", ("reason",))

    def answered(self, route: str, status: int, t0_ns: int) -> None:
        self.m.inc("requests", (route, str(status)))
        self.m.histogram("request_seconds", (route,)).observe((time.perf_counter_ns() - t0_ns) / 1e9)

    def removed(self, reason: str, n: int) -> None:
        self.m.inc("removed", (reason,), n)

    def degraded(self, reasons: list[str]) -> None:
        for r in reasons:
            self.m.inc("degraded", (r,))

    def bind(self, stages: Mapping[str, Mapping[str, Histogram]], fallbacks: Callable[[], Mapping[str, int]],
             scored: Callable[[], Mapping[str, int]] | None = None) -> None:
        def stage_series():
            out = []
            for route, hists in stages.items():
                for stage, h in hists.items():
                    out.append(((route, stage), h.total))
            return out

        self.m.define("stage_seconds_total", "summed sampled time per stage", ("route", "stage"))
        self.m.gauge("stage_seconds_total", stage_series, counter=True)
        self.m.gauge("reasoner_fallbacks", lambda: [((k,), float(v)) for k, v in fallbacks().items()], counter=True)
        if scored is not None:
            self.m.define("scored", "ranked answers by the model that scored them", ("by",))
            self.m.gauge("scored", lambda: [((k,), float(v)) for k, v in scored().items()], counter=True)

    def exposition(self) -> bytes:
        return self.m.exposition()
