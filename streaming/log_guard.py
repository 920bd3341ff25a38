"""The ingest's watch over the events log: it notices a reset and appends again what it answered 202 for.

- Every acknowledged batch of the events topic is kept (``ReplayBuffer``) until the processor's watermark of
  the same log passes it (the store is read every ``TRIM_S``).
- A reset is seen when the log acknowledges a batch at a lower offset than an earlier one of that partition,
  or when the topic's id (``log_identity``) changes. A broker that no longer knows the topic (restarted
  without its log; Tansu still takes records for it) gets the topics created again here: an append that
  never failed would not have done it. Then: ``strata_ingest_log_resets_total{how}``, an ERROR
  log line, ``/readyz`` degraded (``streaming.log_reset_alert_s``), and every kept event is appended again
  (the processor applies by event id: those it had applied count once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from strata.shared import keys as K
from strata.shared.config import StreamingSettings
from strata.streaming.log_identity import TopicMissing, topic_ids
from strata.streaming.replay_buffer import ReplayBuffer
from strata.streaming.topics import ensure_topics

logger = logging.getLogger(__name__)
TRIM_S = 1.0          # how often the processor's watermarks are read (and the topic id checked)
REPLAY_CHUNK = 500


class LogGuard:
    def __init__(self, cfg: StreamingSettings, metrics, append: Callable[[list], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.topic = cfg.topics.events
        self.metrics = metrics
        self.append = append
        self.buffer = ReplayBuffer(cfg.replay_buffer_bytes)
        self.alert_ms = int(cfg.log_reset_alert_s * 1000)
        self.topic_id: str | None = None
        self.last: dict | None = None
        self.until_ms = 0
        self._high: dict[int, int] = {}          # partition -> highest offset acknowledged
        self._replaying: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        if metrics is not None:
            metrics.define("log_resets_total", "resets of the events log seen by the ingest", ("how",))
            metrics.define("replay_buffer_bytes", "bytes of acknowledged events kept until applied")
            metrics.define("replay_buffer_dropped_total", "acknowledged events dropped from the replay buffer "
                           "past its bound (not protected against a log reset)")
            metrics.define("events_replayed_total", "kept events appended again after a log reset")
            for how in ("topic_id", "offsets"):
                metrics.inc("log_resets_total", (how,), by=0)
            metrics.gauge("replay_buffer_bytes", lambda: [((), float(self.buffer.nbytes))])
            metrics.gauge("replay_buffer_dropped_total", lambda: [((), float(self.buffer.dropped))], counter=True)

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="event-log-watch")

    async def stop(self) -> None:
        for task in (self._watcher, self._replaying):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def acked(self, partition: int, first: int, records: list[tuple[bytes, bytes]]) -> None:
        """A batch of the events topic was acknowledged at offsets ``first``...: keep it; an offset lower than
        one acknowledged before means the log was reset."""
        if first < self._high.get(partition, -1):
            self.reset("offsets", {"partition": partition, "offset": first, "acknowledged_before": self._high[partition]})
            self._high.clear()
        self._high[partition] = first + len(records) - 1
        self.buffer.add(self.topic, partition, first, records)

    def reset(self, how: str, detail: dict) -> None:
        now_ms = int(time.time() * 1000)
        self.last = {"how": how, "detected_ms": now_ms, **detail}
        self.until_ms = now_ms + self.alert_ms
        if self.metrics is not None:
            self.metrics.inc("log_resets_total", (how,))
        logger.error("the events log was reset (%s: %s); appending again the %d event(s) not known to be applied",
                     how, detail, len(self.buffer))
        kept = self.buffer.take(self.topic)
        if kept:
            prev = self._replaying
            self._replaying = asyncio.get_running_loop().create_task(self._replay(kept, prev), name="event-replay")

    def seen(self) -> dict | None:
        return self.last if self.last is not None and time.time() * 1000 < self.until_ms else None

    async def _replay(self, records: list[tuple[bytes, bytes]], prev: asyncio.Task | None) -> None:
        if prev is not None:
            await asyncio.gather(prev, return_exceptions=True)
        i = 0
        while i < len(records):
            chunk = records[i:i + REPLAY_CHUNK]
            try:
                await self.append([(self.topic, k, v) for k, v in chunk])
            except Exception as exc:  # noqa: BLE001 - the broker is still coming back: try again shortly
                logger.warning("replay after a log reset: %s: %s; retrying", type(exc).__name__, exc)
                await asyncio.sleep(0.5)
                continue
            if self.metrics is not None:
                self.metrics.inc("events_replayed_total", by=len(chunk))
            i += len(chunk)

    async def _watch(self) -> None:
        from aiokafka.client import AIOKafkaClient

        store = None
        if self.cfg.store.strip().lower() not in ("", "none"):
            from strata.shared.online_store.client import connect

            store = connect(self.cfg.store, 1.0, field="streaming.store")
        client = AIOKafkaClient(bootstrap_servers=self.cfg.broker, request_timeout_ms=int(TRIM_S * 2000))
        started = False
        try:
            while True:
                await asyncio.sleep(TRIM_S)
                try:
                    if not started:
                        await client.bootstrap()
                        started = True
                    try:
                        tid = (await topic_ids(client, [self.topic]))[self.topic]
                    except TopicMissing as exc:      # restarted without its log, and no append failed
                        logger.warning("%s: creating the topics again", exc)
                        await ensure_topics(self.cfg.broker, self.cfg.topics, int(TRIM_S * 2000))
                        tid = (await topic_ids(client, [self.topic]))[self.topic]
                    if tid is not None:
                        if self.topic_id is not None and tid != self.topic_id:
                            self.reset("topic_id", {"old_topic_id": self.topic_id, "topic_id": tid})
                        self.topic_id = tid
                except Exception as exc:  # noqa: BLE001 - broker down: the next round tries again
                    logger.debug("topic id check failed: %s", exc)
                if store is not None:
                    with contextlib.suppress(Exception):
                        await self._trim(store)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
            if store is not None:
                with contextlib.suppress(Exception):
                    await store.aclose()

    async def _trim(self, store) -> None:
        """Forget what the processor applied: watermarks of the same log only (its recorded topic id)."""
        async with store.pipeline(transaction=False) as pipe:
            pipe.hget(K.LOG_IDS_KEY, self.topic)
            pipe.hgetall(K.WATERMARK_KEY)
            log_id, marks = await pipe.execute()
        if (log_id.decode() if log_id else None) != self.topic_id:
            return
        prefix = self.topic + ":"
        applied = {int(f[len(prefix):]): int(v) for f, v in ((f.decode(), v) for f, v in marks.items())
                   if f.startswith(prefix)}
        self.buffer.trim(self.topic, applied)
