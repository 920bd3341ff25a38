"""The ingest service: builds the event log, the handler and the metrics; the ops view of ``/readyz``."""

from __future__ import annotations

from strata.shared.config import StreamingSettings
from strata.shared.serving.metrics import Instruments
from strata.streaming.ingest import IngestHandler
from strata.streaming.log import EventLog


class IngestService:
    def __init__(self, cfg: StreamingSettings) -> None:
        self.cfg = cfg
        self.metrics = Instruments("strata_ingest")
        self.metrics.define("events_accepted_total", "events acknowledged by the log")
        self.metrics.define("events_dead_lettered_total", "rejected events written to the dead-letter topic")
        self.metrics.define("requests_total", "answers by status", ("status",))
        self.log = EventLog(cfg)
        self.handler = IngestHandler(self.log, cfg, self.metrics)
        self.metrics.gauge("broker_up", lambda: [((), 1.0 if self.log.connected else 0.0)])

    async def start(self) -> None:
        await self.log.start()

    async def stop(self) -> None:
        await self.log.stop()

    def readiness(self) -> tuple[int, dict]:
        if not self.log.connected:
            return 503, {"ready": False, "reason": f"event log not connected: {self.log.last_error}"}
        return 200, {"ready": True, "broker": self.cfg.broker}

    def exposition(self) -> bytes:
        return self.metrics.exposition()
