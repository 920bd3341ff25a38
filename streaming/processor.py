"""The stream processor: events topic -> session vectors, profiles, bandit counts, invalidations, triggers.

A consumer group with manual commits: for each fetched batch, read a snapshot of the store, plan the
effects (``streaming.effects``), write them atomically with the partition watermarks and the event ids
(``streaming.store``), then commit the offsets (in the background, never ahead of the write). One write is
in flight while the next batch is read and planned (``run``). Killed between the write and the commit, the
restarted processor (or whoever owns the partition next) re-reads those records and skips them by watermark:
replay changes nothing.

Errors branch on ``shared.errors.is_retriable``: a store or broker that is unavailable retries the same batch
(nothing is skipped); an error about the data (``WRONGTYPE``, an overflow, an exception while planning) splits
the batch in halves until the record that causes it is alone; one that fails the same way twice alone is
dead-lettered with the reason (``poison_records_total``) and the rest of the batch is applied. Records that
fail validation go to the dead-letter topic before the batch is written (at least once).

Watermarks are offsets of one log: they are stored with the topic's id and a log reset (a broker restarted
without its log, a recreated topic) is detected and reported (``streaming.log_resets``); events keep being
applied exactly once by their ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CommitFailedError, KafkaError
from redis.exceptions import RedisError

from strata.shared.auth.impressions import ImpressionSigner
from strata.shared.config import StreamingSettings
from strata.shared.contracts.api import TsWindow, parse_event
from strata.shared.contracts.event_records import decode_event
from strata.shared.errors import StrataError, is_retriable
from strata.streaming import dead_letter
from strata.streaming.catalog import Catalog
from strata.streaming.cluster_store import open_stream_store
from strata.streaming.effects import Plan, Planner, Record, overlay, reads_for
from strata.streaming.log_identity import TopicMissing, topic_ids
from strata.streaming.log_resets import LogResets
from strata.streaming.processor_metrics import ProcessorMetrics
from strata.streaming.store import Bounds
from strata.streaming.topics import ensure_topics
from strata.streaming.triggers import TriggerRelay

logger = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 20
CLOSE_TIMEOUT_S = 10.0       # per broker client at close
IDENTITY_CHECK_S = 2.0        # how often the topic id is compared with the one the watermarks belong to
COMMIT_TIMEOUT_S = 5.0        # an offset commit that has not succeeded by then is given up (redelivery is safe)
MAX_POISON_TRIES = 4          # a record failing alone in different ways this often is dead-lettered anyway


@dataclass(slots=True)
class _InFlight:
    batches: dict
    records: list[Record]
    plan: Plan
    write: asyncio.Future | None = None      # None: planned, not sent yet


def _unmark(plan: Plan) -> None:
    """A plan of records of a replaced log: applied by event id only, no watermark compared or written."""
    plan.partitions = list(plan.wm_expected) or plan.partitions
    plan.wm_expected, plan.wm_new, plan.resets = {}, {}, []


def to_record(topic: str, partition: int, offset: int, value: bytes, wm_field: str = "", log_ms: int = 0,
              window: TsWindow | None = None, epoch: int = 0) -> Record:
    """A log record -> Record, validated by the one event validator (``ts`` within ``window`` of the record's
    log timestamp ``log_ms`` when both are given: producers other than the ingest are held to it too)."""
    try:
        ev = parse_event(decode_event(value), window if log_ms > 0 else None, log_ms)
    except StrataError as exc:
        return Record(topic, partition, offset, None, value, (exc.field, exc.reason), wm_field, log_ms, epoch=epoch)
    except Exception as exc:   # not JSON or msgpack at all
        return Record(topic, partition, offset, None, value, ("body", f"undecodable record: {type(exc).__name__}"),
                      wm_field, log_ms, epoch=epoch)
    return Record(topic, partition, offset, ev, value, None, wm_field, log_ms, epoch=epoch)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, proc: StreamProcessor) -> None:
        self.proc = proc

    async def on_partitions_revoked(self, revoked) -> None:
        return None

    async def on_partitions_assigned(self, assigned) -> None:
        await self.proc.check_log_identity()
        await self.proc.resume_from_watermarks(assigned)


class StreamProcessor:
    def __init__(self, cfg: StreamingSettings, catalog: Catalog, metrics: ProcessorMetrics | None = None,
                 signer: ImpressionSigner | None = None) -> None:
        """``signer`` (auth on): impressions and clicks count only with an impression id it verifies."""
        self.cfg = cfg
        self.planner = Planner(cfg, catalog, signer)
        self.metrics = metrics or ProcessorMetrics()
        self.store = open_stream_store(cfg.store, dedup_ttl_s=cfg.dedup_ttl_s, bounds=Bounds.of(cfg),
                                       wait_replicas=cfg.wait_replicas, wait_timeout_ms=cfg.wait_timeout_ms)
        self.window = TsWindow(int(cfg.ts_skew_s * 1000), int(cfg.ts_horizon_s * 1000))
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.relay: TriggerRelay | None = None
        self.resets = LogResets(self.store.r, self.metrics, cfg.log_reset_alert_s)
        self._kafka: AIOKafkaClient | None = None       # for the topic-id checks
        self._identity_lock = asyncio.Lock()
        self._topic_id: str | None = None                # the events topic's id this process read from
        # +1 whenever this process sees the events log replaced (a new topic id): records fetched before are
        # still applied by event id, but their offsets say nothing of the new log (``_plan``, ``_done``)
        self._epoch = 0
        self._background: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self._to_commit: dict = {}
        self._commit_wanted = asyncio.Event()
        self._positions: dict[TopicPartition, int] = {}
        self.running = False
        self.metrics.instruments.gauge("consumer_lag", self._lag)
        self.metrics.instruments.gauge("log_reset_degraded", lambda: [((), 1.0 if self.resets.degraded() else 0.0)])

    def _lag(self) -> list[tuple[tuple, float]]:
        c = self.consumer
        if c is None:
            return []
        out = []
        for tp in c.assignment():
            hw = c.highwater(tp)
            pos = self._positions.get(tp)
            if hw is not None and pos is not None:
                out.append(((str(tp.partition),), float(max(hw - pos, 0))))
        return out

    def readiness(self) -> tuple[int, dict]:
        """/readyz: 503 until the consumer runs; 200 after, ``degraded`` with the last log reset while it is
        recent (``streaming.log_reset_alert_s``)."""
        if not self.running:
            return 503, {"ready": False, "reason": "the processor is not consuming yet"}
        reset = self.resets.degraded()
        body: dict = {"ready": True, "degraded": reset is not None}
        if reset is not None:
            body["log_reset"] = reset
        return 200, body

    async def start(self) -> None:
        cfg = self.cfg
        await ensure_topics(cfg.broker, cfg.topics)
        self._kafka = AIOKafkaClient(bootstrap_servers=cfg.broker, request_timeout_ms=5000)
        await self._kafka.bootstrap()
        await self.check_log_identity()
        self.producer = AIOKafkaProducer(bootstrap_servers=cfg.broker, acks="all", linger_ms=cfg.linger_ms,
                                         enable_idempotence=False)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.broker, group_id=cfg.group, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            max_poll_records=cfg.max_batch, max_partition_fetch_bytes=8 << 20,
            session_timeout_ms=6000, heartbeat_interval_ms=1000)   # a killed member frees its partitions sooner
        self.consumer.subscribe([cfg.topics.events], listener=_Rebalance(self))
        await self.consumer.start()
        self.relay = TriggerRelay(self.store.r, self.producer, cfg.topics.triggers, self.metrics,
                                  dead_letter_topic=cfg.topics.dead_letter)

    async def check_log_identity(self) -> None:
        """Compare the events topic's id with the one its watermarks belong to (see ``streaming.log_resets``);
        on a change, read the topic from its start. A broker that no longer knows the topic (restarted without
        its log, yet taking records for it) gets it created again first: that gives the new id, and offset
        commits work again. Errors are logged and left to the next check."""
        if self._kafka is None:
            return
        topic = self.cfg.topics.events
        async with self._identity_lock:
            try:
                try:
                    tid = (await topic_ids(self._kafka, [topic]))[topic]
                except TopicMissing as exc:      # a restarted broker that lost it (and takes records for it)
                    logger.warning("%s: creating the topics again", exc)
                    await ensure_topics(self.cfg.broker, self.cfg.topics)
                    tid = (await topic_ids(self._kafka, [topic]))[topic]
                changed = await self.resets.record_id(topic, tid)
            except Exception as exc:  # noqa: BLE001 - broker or store down: the next check tries again
                logger.warning("log identity check failed: %s: %s", type(exc).__name__, exc)
                return
            # another processor may have recorded the new id first: what this one read from decides its seek
            changed = changed or (tid is not None and self._topic_id is not None and tid != self._topic_id)
            if tid is not None:
                self._topic_id = tid
            if changed:
                self._epoch += 1
            if changed and self.consumer is not None:
                self._to_commit = {}                 # offsets of the old log: never committed on the new one
                mine = [tp for tp in self.consumer.assignment() if tp.topic == topic]
                if mine:
                    await self.consumer.seek_to_beginning(*mine)

    async def resume_from_watermarks(self, assigned) -> None:
        """Start each assigned partition just after its watermark (what the store says was applied, written
        with the effects), or at the log's start when there is none: committed offsets are only a hint, and
        a broker that lost its log may hand back offsets of the old one. Store down: the committed offsets
        stay (records at or below a watermark are skipped anyway)."""
        mine = [tp for tp in assigned if tp.topic == self.cfg.topics.events]
        if not mine or self.consumer is None:
            return
        try:
            marks = await self.store.watermarks([f"{tp.topic}:{tp.partition}" for tp in mine])
        except Exception as exc:  # noqa: BLE001 - the committed offsets are used then
            logger.warning("could not read the watermarks at assignment (%s: %s); resuming from the committed "
                           "offsets", type(exc).__name__, exc)
            return
        ends: dict = {}
        try:        # a watermark past the log's end is a reset too (whatever the topic id says: a broker that lost
            ends = await self.consumer.end_offsets(mine)      # the topic keeps the old id until it is recreated)
        except Exception as exc:  # noqa: BLE001 - then the watermarks are trusted
            logger.warning("could not read the log's end offsets: %s: %s", type(exc).__name__, exc)
        fresh = []
        for tp, wm in zip(mine, marks, strict=True):
            if wm >= 0 and tp in ends and wm + 1 > ends[tp]:
                await self.resets.alert(f"{tp.topic}:{tp.partition}", "offsets",
                                        {"watermark_was": wm, "log_end": ends[tp]})
                wm = -1
            if wm < 0:
                fresh.append(tp)
            else:
                self.consumer.seek(tp, wm + 1)
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)

    async def _identity_watch(self) -> None:
        while True:
            await asyncio.sleep(IDENTITY_CHECK_S)
            await self.check_log_identity()

    async def run(self) -> None:
        """Consume until ``stop()``, overlapping the store's work with the processor's: batch N is planned,
        then batch N+1's snapshot is read while the store is idle, then N's write is sent and, while the store
        runs it, N+1 is planned (on that snapshot overlaid with N's effects: ``effects.overlay``) and batch
        N+2 fetched and validated; N+1's write is sent only after N's landed (if N's did not, both are redone
        in order). With nothing more to fetch, a planned write is sent at once."""
        assert self.consumer is not None and self.relay is not None
        tasks = [asyncio.create_task(self.relay.run(), name="trigger-relay"),
                 asyncio.create_task(self._committer(), name="committer"),
                 asyncio.create_task(self._identity_watch(), name="log-identity")]
        self.running = True
        planned: _InFlight | None = None
        fetched: tuple[dict, list[Record]] | None = None      # validated, not read or planned yet
        try:
            while not self._stop.is_set():
                if fetched is None:
                    fetched = await self._fetch(0 if planned is not None else 100)
                if fetched is None:
                    if planned is not None:          # nothing more yet: write the planned batch now
                        planned.write = await self._start_write(planned.plan, planned.records)
                        await self._settle(planned)
                        planned = None
                    continue
                planned, fetched = await self._advance(planned, *fetched)
            if planned is not None:
                planned.write = await self._start_write(planned.plan, planned.records)
                await self._settle(planned)
                planned = None
        finally:
            if planned is not None and planned.write is not None and not planned.write.done():
                planned.write.cancel()       # not known to be written: not committed, so redelivered
                await asyncio.gather(planned.write, return_exceptions=True)
            for t in tasks:
                t.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=5.0)    # a stop never hangs on a stuck background call
            for t in stuck:
                logger.warning("%s did not stop within 5 s of its cancel; left behind", t.get_name())
            if self._to_commit:
                await self._commit()

    async def _fetch(self, timeout_ms: int) -> tuple[dict, list[Record]] | None:
        """The next fetched records, validated (None: nothing yet)."""
        consumer = self.consumer
        assert consumer is not None         # start made it
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.cfg.max_batch)
        if not batches:
            return None
        records = []
        window, epoch = self.window, self._epoch
        for tp, msgs in batches.items():
            topic, partition, wm_field = tp.topic, tp.partition, f"{tp.topic}:{tp.partition}"
            records += [to_record(topic, partition, m.offset, m.value, wm_field, m.timestamp, window, epoch)
                        for m in msgs]
        return batches, records

    async def _advance(self, prev: _InFlight | None, batches: dict,
                       records: list[Record]) -> tuple[_InFlight | None, tuple[dict, list[Record]] | None]:
        """Read ``records``' snapshot, send ``prev``'s write, plan ``records`` and fetch the next records while
        the store runs it, then wait for it. Returns the new planned batch (its write not sent yet; None if it
        was applied here) and the next fetched records (None: none yet)."""
        now_ms = int(time.time() * 1000)
        try:
            snap = await self.store.read(reads_for(records), now_ms)
        except (RedisError, OSError, TimeoutError):
            snap = None
        write = None
        if prev is not None:
            prev.write = write = await self._start_write(prev.plan, prev.records)   # the store runs it while we plan
        plan = None
        if snap is not None:
            if prev is not None:
                overlay(snap, prev.plan)
            try:
                plan = self._plan(records, snap, now_ms)
            except Exception:  # noqa: BLE001 - a record the planner cannot handle: ``apply`` isolates it
                plan = None
        fetched = None
        if write is not None and not write.done():
            fetched = await self._fetch(0)          # validate the next records while the write runs too
        if prev is not None and not await self._settle(prev):
            plan = None            # prev was redone from a fresh read: this plan may rest on what it did not write
        if plan is None:
            await self.apply(records)
            self._done(batches, records)
            return None, fetched
        if plan.dead:
            await self._dead_letter(plan.dead)
        return _InFlight(batches, records, plan), fetched

    async def _start_write(self, plan: Plan, records: list[Record]) -> asyncio.Future:
        """Send the plan's write; a future for its answer (a failed send: a future holding the error)."""
        if self._stale(records):            # planned before the log was seen replaced: no watermarks (``_plan``)
            _unmark(plan)
        try:
            answer = await self.store.send_write(plan)
        except (RedisError, OSError, TimeoutError) as exc:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return asyncio.create_task(answer(), name="write-batch")

    async def _settle(self, inf: _InFlight) -> bool:
        """Wait for an in-flight write; True if it landed as planned, False if the batch had to be redone."""
        write = inf.write
        assert write is not None            # _start_write sent it
        try:
            if await write:
                self._written(inf.plan)
                self._done(inf.batches, inf.records)
                return True
            self.metrics.instruments.inc("write_conflicts_total")
        except (RedisError, OSError, TimeoutError) as exc:
            if self._stop.is_set():
                raise asyncio.CancelledError from exc
            self.metrics.instruments.inc("store_errors_total")
            logger.warning("batch write failed, redoing it: %s: %s", type(exc).__name__, exc)
        await self.apply(inf.records)
        self._done(inf.batches, inf.records)
        return False

    def _plan(self, records: list[Record], snap, now_ms: int) -> Plan:
        plan = self.planner.plan(records, snap, now_ms)
        if self._stale(records):
            # fetched from a log since replaced (a redo after the watermarks were dropped, or a batch in flight
            # across the check): applied by event id, but its offsets must not become the new log's watermarks
            # (the consumer would resume past the new log's records, and the ingest trim what was never applied)
            _unmark(plan)
        return plan

    def _stale(self, records: list[Record]) -> bool:
        return bool(records) and records[0].epoch != self._epoch

    def _done(self, batches: dict, records: list[Record] | None = None) -> None:
        if records is not None and self._stale(records):
            return                   # offsets of a replaced log: neither positions nor commits of the new one
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items()}
        self._positions.update(offsets)
        # Committed in the background, never before the write above: the watermarks already make a
        # redelivery a no-op, so the commit only bounds how much is re-read after a crash, and the next
        # batch need not wait for the broker's answer.
        self._to_commit.update(offsets)
        self._commit_wanted.set()

    async def _committer(self) -> None:
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self._commit()

    async def _commit(self) -> None:
        consumer = self.consumer
        assert consumer is not None         # offsets to commit come from its records
        offsets, self._to_commit = self._to_commit, {}
        try:            # aiokafka retries a retriable commit error forever: bounded here (a commit only saves
            async with asyncio.timeout(COMMIT_TIMEOUT_S):       # re-reading; the watermarks make that safe)
                await consumer.commit(offsets)
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            # the partitions moved: their next owner re-reads these records and skips them by watermark
            logger.warning("commit failed (%s: %s); the records will be redelivered and skipped",
                           type(exc).__name__, exc)

    async def apply(self, records: list[Record]) -> None:
        """Write the records' effects exactly once. Retriable errors (store or broker unavailable, a stale
        snapshot) retry; an error about the data splits the records in halves, applied in order, until the
        record causing it is alone: failing the same way twice alone, it is dead-lettered with the reason."""
        err = await self._attempt(records)
        if err is None:
            return
        if len(records) > 1:
            mid = len(records) // 2
            await self.apply(records[:mid])
            await self.apply(records[mid:])
            return
        seen = [f"{type(err).__name__}: {err}"]
        while len(seen) < MAX_POISON_TRIES:
            err = await self._attempt(records)
            if err is None:
                return
            reason = f"{type(err).__name__}: {err}"
            if reason == seen[-1]:
                break
            seen.append(reason)
        await self._quarantine(records[0], seen[-1])

    async def _attempt(self, records: list[Record]) -> BaseException | None:
        """Read, plan and write ``records`` until written (None) or until an error that retrying cannot fix
        (returned). Retriable errors and write conflicts retry with a backoff."""
        reads = reads_for(records)
        backoff = 0.05
        conflicts = 0
        while True:
            try:
                now_ms = int(time.time() * 1000)
                snap = await self.store.read(reads, now_ms)
                plan = self._plan(records, snap, now_ms)
                if plan.dead:
                    await self._dead_letter(plan.dead)
                if await self.store.write(plan):
                    self._written(plan)
                    return None
                conflicts += 1
                self.metrics.instruments.inc("write_conflicts_total")
                if conflicts > MAX_CONFLICT_RETRIES:
                    if self._stop.is_set():
                        raise asyncio.CancelledError
                    logger.warning("batch kept conflicting with another writer; backing off")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - branch on retriable: retry, or hand back to isolate it
                if not is_retriable(exc):
                    self.metrics.instruments.inc("store_errors_total")
                    logger.warning("a batch of %d record(s) failed on its data (%s: %s); isolating the cause",
                                   len(records), type(exc).__name__, exc)
                    return exc
                if self._stop.is_set():     # shutting down: leave the batch uncommitted (it is redelivered)
                    raise asyncio.CancelledError from exc
                self.metrics.instruments.inc("store_errors_total")
                logger.warning("batch write failed, retrying in %.2fs: %s: %s", backoff, type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _quarantine(self, rec: Record, reason: str) -> None:
        """Dead-letter a record the store refuses whatever is retried, and move its partition's watermark past
        it (the rest of the batch goes on). A watermark-only write that fails too is not the record's fault:
        it is retried until it lands."""
        logger.error("dead-lettering %s offset %d: %s", rec.wm_field, rec.offset, reason)
        dead = Record(rec.topic, rec.partition, rec.offset, None, rec.raw, ("store", f"the store refused it: {reason}"),
                      rec.wm_field, rec.log_ms, epoch=rec.epoch)
        backoff = 0.05
        while True:
            err = await self._attempt([dead])
            if err is None:
                return
            logger.error("could not move the watermark past a dead-lettered record: %s: %s", type(err).__name__, err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _written(self, plan: Plan) -> None:
        written_ms = time.time() * 1000
        # freshness from each event's time, bounded by when it reached the log (a client clock far behind
        # would otherwise read as years of delay)
        ts = np.fromiter((ev.ts_ms for ev in plan.applied), dtype=np.float64, count=len(plan.applied))
        self.metrics.freshness.observe_many(np.clip(written_ms - ts, 0.0, self.window.horizon_ms) / 1000)
        self.metrics.batch(len(plan.applied), plan.duplicates, plan.replayed, len(plan.dead))
        self.metrics.screened(plan.rejected, plan.erased)
        self.planner.confirm(plan)
        if plan.resets:
            task = asyncio.get_running_loop().create_task(self._on_reset(plan.resets), name="log-reset")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _on_reset(self, resets: list[tuple[str, int, int]]) -> None:
        for wf, old, offset in resets:
            await self.resets.alert(wf, "event_id", {"watermark_was": old, "offset": offset})
        await self.check_log_identity()

    async def _dead_letter(self, dead: list[Record]) -> None:
        assert self.producer is not None
        now_ms = int(time.time() * 1000)
        futures = []
        for rec in dead:
            fld, reason = rec.error or (None, "invalid")
            try:
                decoded = decode_event(rec.raw)
            except Exception:  # noqa: BLE001 - kept as bytes then
                decoded = None
            code = rec.code or ("store_refused" if fld == "store" else "invalid_record")
            value = dead_letter.record("processor", code, fld, reason, now_ms, rec.raw, decoded, topic=rec.topic, partition=rec.partition,
                                       offset=rec.offset)
            futures.append(await self.producer.send(self.cfg.topics.dead_letter, value))
        await asyncio.gather(*futures)
        # counted where the record goes out, not where it is quarantined: a record delivered twice (a rebalance)
        # is quarantined twice, but the second time its watermark is already past it and nothing is sent
        refused = sum(1 for rec in dead if rec.error is not None and rec.error[0] == "store")
        if refused:
            self.metrics.instruments.inc("poison_records_total", by=refused)

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        """Close the broker clients and the store; each broker client gets ``CLOSE_TIMEOUT_S`` (a broker that
        does not answer must not hold the shutdown: the watermarks already say what was applied)."""
        self.running = False
        for name, part in (("admin client", self._kafka), ("consumer", self.consumer), ("producer", self.producer)):
            if part is None:
                continue
            closing = part.close() if name == "admin client" else part.stop()
            try:
                await asyncio.wait_for(closing, CLOSE_TIMEOUT_S)
            except TimeoutError:
                logger.warning("the %s did not close within %.0f s; left behind", name, CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - closing: nothing to do about it
                pass
        await self.store.close()
