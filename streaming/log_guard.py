"""The ingest's watch over the events log: it notices a reset and appends again what it answered 202 for.

- Every acknowledged batch of the events topic is kept (``ReplayBuffer``) until the processor's watermark of
  the same log passes it (the store is read every ``TRIM_S``).
- A reset is seen when the log acknowledges a batch at a lower offset than an earlier one of that partition,
  or when the topic's id (``log_identity``) changes. A broker that no longer knows the topic (restarted
  without its log; Tansu still takes records for it) gets the topics created again here: an append that
  never failed would not have done it. Then: ``strata_ingest_log_resets_total{how}``, an ERROR
  log line, ``/readyz`` degraded (``streaming.log_reset_alert_s``), and every kept event is appended again
  (the processor applies by event id: those it had applied count once).
- For ``streaming.log_reset_alert_s`` after a reset (seen here, or recorded by the processor), a partition's
  watermark is not trusted to say what was applied: it may still be the old log's, or one written by a batch
  of the lost log after the processor moved on. A kept event is forgotten then only once its id is in the
  processor's dedup sets; one that its partition's watermark passed without being applied (the new log's
  offsets may be below the watermark a lagging processor still holds, or the processor resumed past it) is
  appended again after ``VERIFY_ROUNDS`` checks, at most ``MAX_REAPPENDS`` times
  (``strata_ingest_events_reappended_total``); past that it is counted in
  ``strata_ingest_events_unapplied_total`` with an ERROR line (lost, or dead-lettered by the processor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from strata.shared import keys as K
from strata.shared.config import StreamingSettings
from strata.shared.contracts.event_records import decode_event
from strata.streaming.log_identity import TopicMissing, topic_ids
from strata.streaming.replay_buffer import ReplayBuffer
from strata.streaming.topics import ensure_topics

logger = logging.getLogger(__name__)
TRIM_S = 1.0          # how often the processor's watermarks are read (and the topic id checked)
REPLAY_CHUNK = 500
VERIFY_ROUNDS = 3     # checks a kept event its partition's watermark passed may stay unapplied before it is appended again
MAX_REAPPENDS = 3     # ... at most this many times; then it is counted as never applied


def seen_member(value: bytes) -> str | None:
    """The id an event record gets in the processor's dedup sets (``keys.seen_member``); None if undecodable."""
    try:
        ev = decode_event(value)
        if not isinstance(ev, dict):
            return None
        return K.seen_member(str(ev.get("tenant") or "default"), str(ev["event_id"]))
    except Exception:  # noqa: BLE001 - not an event of this ingest: left to the watermarks
        return None


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
        self.dedup_ms = max(int(cfg.dedup_ttl_s * 1000), 1)
        self.verify_until_ms = 0                 # kept events are forgotten by event id until then (a recent reset)
        self._passed: dict[str, int] = {}        # id -> checks it stayed unapplied below its partition's watermark
        self._reappended: dict[str, int] = {}    # id -> times appended again
        self._in_replay: set[str] = set()        # ids being appended again right now
        self._replaying: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._stopping = False
        if metrics is not None:
            metrics.define("log_resets_total", "resets of the events log seen by the ingest", ("how",))
            metrics.define("replay_buffer_bytes", "bytes of acknowledged events kept until applied")
            metrics.define("replay_buffer_dropped_total", "acknowledged events dropped from the replay buffer "
                           "past its bound (not protected against a log reset)")
            metrics.define("events_replayed_total", "kept events appended again after a log reset")
            metrics.define("events_reappended_total", "kept events appended again after a reset because their "
                           "partition's watermark passed them and the processor had not applied them")
            metrics.define("events_unapplied_total", "acknowledged events given up on: appended again "
                           f"{MAX_REAPPENDS} times after a reset and never applied (lost, or dead-lettered)")
            for name in ("events_reappended_total", "events_unapplied_total"):
                metrics.inc(name, by=0)
            for how in ("topic_id", "offsets"):
                metrics.inc("log_resets_total", (how,), by=0)
            metrics.gauge("replay_buffer_bytes", lambda: [((), float(self.buffer.nbytes))])
            metrics.gauge("replay_buffer_dropped_total", lambda: [((), float(self.buffer.dropped))], counter=True)

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="event-log-watch")

    async def stop(self) -> None:
        """Cancel the watcher and a replay, again until they end: a cancellation can be swallowed inside a client
        library (asyncio.wait_for's race in Python 3.11), and one lost cancel hung ``stop`` for good; the watcher
        also checks ``_stopping`` at every round."""
        self._stopping = True
        for task in (self._watcher, self._replaying):
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)

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
        self.verify_until_ms = max(self.verify_until_ms, now_ms + self.alert_ms)
        if self.metrics is not None:
            self.metrics.inc("log_resets_total", (how,))
        logger.error("the events log was reset (%s: %s); appending again the %d event(s) not known to be applied",
                     how, detail, len(self.buffer))
        kept = self.buffer.take(self.topic)
        if kept:
            self._schedule(kept)

    def _schedule(self, records: list[tuple[bytes, bytes]], members: set[str] | None = None) -> None:
        prev = self._replaying
        self._replaying = asyncio.get_running_loop().create_task(self._replay(records, prev, members),
                                                                 name="event-replay")

    def seen(self) -> dict | None:
        return self.last if self.last is not None and time.time() * 1000 < self.until_ms else None

    async def _replay(self, records: list[tuple[bytes, bytes]], prev: asyncio.Task | None,
                      members: set[str] | None = None) -> None:
        try:
            await self._append_all(records, prev)
        finally:
            if members:
                self._in_replay -= members

    async def _append_all(self, records: list[tuple[bytes, bytes]], prev: asyncio.Task | None) -> None:
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
            while not self._stopping:
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
        """Forget what the processor applied: by the watermarks of the same log (its recorded topic id), or, for
        a while after a reset, by event id (``_verify``)."""
        async with store.pipeline(transaction=False) as pipe:
            pipe.hget(K.LOG_IDS_KEY, self.topic)
            pipe.hgetall(K.WATERMARK_KEY)
            pipe.exists(K.LOG_RESETS_KEY)
            log_id, marks, resets = await pipe.execute()
        now_ms = int(time.time() * 1000)
        if resets:                               # the processor saw a reset lately: trust no watermark either
            self.verify_until_ms = max(self.verify_until_ms, now_ms + int(TRIM_S * 2000))
        applied: dict[int, int] = {}
        if (log_id.decode() if log_id else None) == self.topic_id:
            prefix = self.topic + ":"
            applied = {int(f[len(prefix):]): int(v) for f, v in ((f.decode(), v) for f, v in marks.items())
                       if f.startswith(prefix)}
        if now_ms < self.verify_until_ms:
            await self._verify(store, applied, now_ms)
        elif applied:
            self.buffer.trim(self.topic, applied)

    async def _verify(self, store, applied: dict[int, int], now_ms: int) -> None:
        """After a reset: forget the kept events the processor applied (their ids are in its dedup sets), and
        append again those their partition's watermark passed ``VERIFY_ROUNDS`` checks in a row unapplied."""
        batches = self.buffer.batches(self.topic)
        for _, kept in batches:
            if kept.members is None:
                kept.members = [seen_member(v) for _, v in kept.records]
        # every batch's members were filled just above
        query = list({m for _, kept in batches for m in kept.members if m is not None})     # type: ignore[union-attr]
        seen: set[str] = set()
        if query:
            b = now_ms // self.dedup_ms          # the processor's bucket, give or take its clock
            async with store.pipeline(transaction=False) as pipe:
                for bucket in (b - 1, b, b + 1):
                    pipe.smismember(K.seen_bucket_key(bucket), query)
                rows = await pipe.execute()
            seen = {m for m, *flags in zip(query, *rows, strict=True) if any(flags)}
        passed: dict[str, int] = {}
        again: list[tuple[bytes, bytes]] = []
        again_ids: set[str] = set()
        given_up = 0
        for p, kept in batches:
            members = kept.members or []
            wm = applied.get(p, -1)
            done = [m is not None and m in seen for m in members]
            self.buffer.keep_only(self.topic, p, kept, [not d for d in done])
            if kept.gone:
                continue
            retry = []
            for m, off in zip(kept.members or [], kept.record_offsets(), strict=True):
                r = False
                if m is None:
                    r = off <= wm                # cannot be checked by id: the watermark decides, as before
                elif off <= wm:
                    n = passed[m] = self._passed.get(m, 0) + 1
                    r = n >= VERIFY_ROUNDS
                retry.append(r)
            members = kept.members or [None] * len(retry)     # (keep_only replaces the list: this one stays)
            out = self.buffer.keep_only(self.topic, p, kept, [not r for r in retry])
            for rec, m in zip(out, [m for m, r in zip(members, retry, strict=True) if r], strict=True):
                if m is None:
                    continue                     # trimmed by its watermark
                passed.pop(m, None)
                times = self._reappended.get(m, 0)
                if times >= MAX_REAPPENDS:
                    given_up += 1
                    self._reappended.pop(m, None)
                    continue
                self._reappended[m] = times + 1
                again.append(rec)
                again_ids.add(m)
        for m in seen:
            self._reappended.pop(m, None)
        self._passed = passed
        if len(self._reappended) > 4 * max(len(query), 1024):      # ids no longer kept (dropped past the bound)
            live = {m for _, kept in self.buffer.batches(self.topic) for m in kept.members or []} | self._in_replay
            self._reappended = {m: n for m, n in self._reappended.items() if m in live}
        if given_up:
            if self.metrics is not None:
                self.metrics.inc("events_unapplied_total", by=given_up)
            logger.error("%d acknowledged event(s) were appended again %d times after a log reset and never "
                         "applied: lost, or dead-lettered by the processor", given_up, MAX_REAPPENDS)
        if again:
            if self.metrics is not None:
                self.metrics.inc("events_reappended_total", by=len(again))
            logger.warning("after a log reset: appending again %d event(s) the watermarks passed but the "
                           "processor did not apply", len(again))
            self._in_replay |= again_ids
            self._schedule(again, again_ids)
