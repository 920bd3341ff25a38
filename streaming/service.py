"""The ingest service: builds the event log, the handler and the metrics; the ops view of ``/readyz``.

``/readyz`` is 503 while the event log is not connected; 200 otherwise, with ``"degraded": true`` and the
resets while the processor (or this service: a log that answered with a new topic id or lower offsets) has
detected a reset of the events log within ``streaming.log_reset_alert_s`` (``streaming.log_resets``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from strata.shared.config import StreamingSettings
from strata.shared.serving.metrics import Instruments
from strata.shared.serving.tasks import stop_task
from strata.streaming.ingest import IngestHandler
from strata.streaming.log import EventLog
from strata.streaming.log_resets import recorded_resets

logger = logging.getLogger(__name__)
RESETS_POLL_S = 2.0


class IngestService:
    def __init__(self, cfg: StreamingSettings) -> None:
        self.cfg = cfg
        self.metrics = Instruments("strata_ingest")
        self.metrics.define("events_accepted_total", "events acknowledged by the log")
        self.metrics.define("events_dead_lettered_total", "rejected events written to the dead-letter topic")
        self.metrics.define("requests_total", "answers by status", ("status",))
        self.metrics.define("log_reset_degraded", "1 while a reset of the events log was detected recently")
        self.log = EventLog(cfg, self.metrics)
        self.handler = IngestHandler(self.log, cfg, self.metrics)
        self.metrics.gauge("broker_up", lambda: [((), 1.0 if self.log.connected else 0.0)])
        self.metrics.gauge("log_reset_degraded", lambda: [((), 1.0 if self._resets() else 0.0)])
        self.store_resets: dict[str, dict] = {}
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        await self.log.start()
        if self.cfg.store.strip().lower() not in ("", "none"):
            self._watcher = asyncio.create_task(self._watch_resets(), name="log-reset-watch")

    async def stop(self) -> None:
        await stop_task(self._watcher)      # again until it ends: a cancel lost in the store client hung this
        await self.log.stop()

    async def _watch_resets(self) -> None:
        """Poll the resets the processor recorded (the store is optional here: errors are ignored)."""
        from strata.shared.online_store.client import connect

        r = connect(self.cfg.store, 1.0, field="streaming.store")
        if r is None:
            return
        try:
            while True:
                with contextlib.suppress(Exception):
                    self.store_resets = await recorded_resets(r)
                await asyncio.sleep(RESETS_POLL_S)
        finally:
            with contextlib.suppress(Exception):
                await r.aclose()

    def _resets(self) -> dict[str, dict]:
        out = dict(self.store_resets)
        own = self.log.reset_seen()
        if own is not None:
            out["ingest"] = own
        return out

    def readiness(self) -> tuple[int, dict]:
        if not self.log.connected:
            return 503, {"ready": False, "reason": f"event log not connected: {self.log.last_error}"}
        resets = self._resets()
        body: dict = {"ready": True, "broker": self.cfg.broker, "degraded": bool(resets)}
        if resets:
            body["log_resets"] = resets
        return 200, body

    def exposition(self) -> bytes:
        return self.metrics.exposition()
