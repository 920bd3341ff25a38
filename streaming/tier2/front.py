"""Tier 2's ``POST /v1/recommend`` behind the shared front door (``shared.serving.front_door``): mounted in the
streaming service's app, counted in tier 2's own instruments (``requests_total{status}``, ``request_seconds``).
No model or ONNX import here: the ingest-only app imports this module too."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from strata.shared.auth.gate import Gate
from strata.shared.serving.front_door import HandlerRoute, mount
from strata.shared.serving.metrics import Instruments

if TYPE_CHECKING:
    from strata.streaming.tier2.service import Tier2Service


class Tier2Recorder:
    """``front_door.Recorder`` over tier 2's instruments."""

    def __init__(self, metrics: Instruments) -> None:
        self.metrics = metrics
        self.latency = metrics.histogram("request_seconds")

    def answered(self, route: str, status: int, t0_ns: int) -> None:
        self.latency.observe((time.perf_counter_ns() - t0_ns) / 1e9)
        self.metrics.inc("requests_total", (str(status),))


def mount_recommend(api: Any, tier2: Tier2Service, max_body: int, gate: Gate | None = None) -> None:
    """Serve tier 2's recommend route from the streaming service's FastAPI app (behind ``gate`` when given)."""
    mount(api, HandlerRoute(tier2.handler, max_body=max_body, recorder=Tier2Recorder(tier2.metrics), gate=gate))
