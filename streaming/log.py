"""EventLog: the ingest side of the Kafka-protocol log (Tansu locally, Kafka in production), via aiokafka.

Records are acknowledged by ``acks=all`` before ``append`` returns; a broker that does not answer within
``timeout_s`` raises ``BrokerUnavailable`` (503 + Retry-After) and nothing is claimed written; a record the
log can never take (too large) raises ``PayloadTooLarge`` (413, not retriable). The producer connects in the
background and reconnects by itself, so the service starts and recovers without the broker. No
transactions: idempotence comes from event ids, applied by the processor. Acknowledged events are kept until
applied and appended again if the log is reset (``streaming.log_guard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from strata.shared.config import StreamingSettings
from strata.shared.errors import PayloadTooLarge, describe
from strata.shared.serving.tasks import stop_task
from strata.streaming.errors import BrokerUnavailable
from strata.streaming.log_guard import LogGuard

try:
    from strata.streaming._murmur2 import partition
except ImportError:        # no C compiler at install time: aiokafka's own (pure-Python) murmur2, same partitions
    from aiokafka.partitioner import murmur2

    def partition(key: bytes, n: int) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % n
from strata.streaming.topics import ensure_topics

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5         # a broker that is down is tried again after this, then twice as long each time ...
RETRY_MAX_S = 5.0           # ... up to this (one log line per try)


class _OpenBatch:
    """A batch being filled by the requests of one event-loop turn, and the future they all wait on."""

    __slots__ = ("producer", "batch", "done", "records")

    def __init__(self, producer: AIOKafkaProducer, batch: BatchBuilder) -> None:
        self.producer = producer
        self.batch = batch
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.done.add_done_callback(_retrieved)
        self.records: list[tuple[bytes, bytes]] = []     # events-topic records, kept once acknowledged


def _retrieved(f: asyncio.Future) -> None:
    """Mark a batch's error as seen (its requests may all have timed out): no 'never retrieved' warning."""
    if not f.cancelled():
        f.exception()


class EventLog:
    def __init__(self, cfg: StreamingSettings, metrics=None) -> None:
        self.cfg = cfg
        self.events_topic = cfg.topics.events
        self.guard = LogGuard(cfg, metrics, self.append)
        self.timeout_s = cfg.produce_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task | None = None
        self.last_error = "not connected yet"
        self._topics_checked = False
        self._open: dict[tuple[str, int], _OpenBatch] = {}     # this turn's batches, per (topic, partition)
        self._flusher: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def reset_seen(self) -> dict | None:
        """The log reset this service saw last, while it is recent (for /readyz)."""
        return self.guard.seen()

    async def start(self) -> None:
        """Try to connect now; if the broker is down, keep trying in the background."""
        self.guard.start()
        if not await self._connect_once():
            self._connector = asyncio.create_task(self._connect_loop(), name="event-log-connect")

    async def _connect_once(self) -> bool:
        producer = AIOKafkaProducer(bootstrap_servers=self.cfg.broker, acks="all", linger_ms=self.cfg.linger_ms,
                                    request_timeout_ms=int(self.timeout_s * 1000), max_batch_size=1 << 20,
                                    max_request_size=8 << 20, enable_idempotence=False)
        try:
            await producer.start()
            await ensure_topics(self.cfg.broker, self.cfg.topics, int(self.timeout_s * 1000))
            self._topics_checked = True
        except (KafkaError, BrokerUnavailable, OSError) as exc:
            self.last_error = exc.reason if isinstance(exc, BrokerUnavailable) else describe(exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        logger.info("event log connected", extra={"broker": self.cfg.broker})
        return True

    async def _connect_loop(self) -> None:
        """Try again, backing off, with one log line per try (aiokafka's own lines about the failed connects
        are passed once a minute: ``shared.serving.logs``)."""
        delay = RETRY_FIRST_S
        while True:
            logger.warning("event log: broker %s not reachable (%s); next try in %g s", self.cfg.broker,
                           self.last_error, delay)
            await asyncio.sleep(delay)
            if await self._connect_once():
                return
            delay = min(delay * 2, RETRY_MAX_S)

    async def append(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Write (topic, key, value) records; returns once the log acknowledged all of them (acks=all)."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable(f"event log not connected ({self.last_error})", field="broker")
        try:
            async with asyncio.timeout(self.timeout_s):
                if not self._topics_checked:     # after an outage: a restarted broker may have lost them
                    await ensure_topics(self.cfg.broker, self.cfg.topics, int(self.timeout_s * 1000))
                    self._topics_checked = True
                waits = await self._queue(producer, records)
                await asyncio.wait(waits)        # never cancels them: other requests' records share the batches
                for w in waits:
                    w.result()                   # raises the batch's error
        except (KafkaError, TimeoutError, OSError, BrokerUnavailable) as exc:
            if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError)):   # never fixed by a retry
                raise PayloadTooLarge(f"a record is too large for the log: {exc}", field="events") from None
            self._topics_checked = False
            self.last_error = describe(exc)
            raise BrokerUnavailable(f"event log did not acknowledge within {self.timeout_s}s: {self.last_error}",
                                    field="broker") from None

    async def _queue(self, producer: AIOKafkaProducer,
                     records: Sequence[tuple[str, bytes | None, bytes]]) -> list[asyncio.Future]:
        """Add the records to the open per-partition batches, shared by every request of this event-loop turn
        (a keyed record goes where Kafka's default partitioner puts it, so a session's events stay in order on
        one partition; keyless records go one by one); the flusher sends them once this turn's requests are
        in. Returns the futures of the batches holding them. Appending to a batch builder costs ~1 us a
        record, ``producer.send`` ~20; a batch shared by many requests also pays aiokafka's per-request
        costs (a ProduceRequest, its response, futures) once."""
        waits: list[asyncio.Future] = []
        counts: dict[str, int] = {}
        for topic, key, value in records:
            if key is None:
                waits.append(await producer.send(topic, value))
                continue
            n = counts.get(topic)
            if n is None:
                n = counts[topic] = len(await producer.partitions_for(topic))
            tp = (topic, partition(key, n))
            op = self._open.get(tp)
            if op is None or op.producer is not producer:
                op = self._open[tp] = _OpenBatch(producer, producer.create_batch())
            if op.batch.append(key=key, value=value, timestamp=None) is None:      # full: send it, open another
                del self._open[tp]
                await self._ship(tp, op)
                op = self._open[tp] = _OpenBatch(producer, producer.create_batch())
                if op.batch.append(key=key, value=value, timestamp=None) is None:
                    raise PayloadTooLarge(f"an event of {len(value)} bytes does not fit a batch", field="events")
            if topic == self.events_topic:
                op.records.append((key, value))
            if not waits or waits[-1] is not op.done:
                waits.append(op.done)
        if self._open and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="event-log-flush")
        return list(dict.fromkeys(waits))

    async def _flush(self) -> None:
        while self._open:
            opened, self._open = self._open, {}
            for tp, op in opened.items():
                await self._ship(tp, op)

    async def _ship(self, tp: tuple[str, int], op: _OpenBatch) -> None:
        """Hand one batch to the producer; its acknowledgement (or error) resolves ``op.done``."""
        guard = self.guard
        try:
            ack = await op.producer.send_batch(op.batch, tp[0], partition=tp[1])
        except Exception as exc:  # noqa: BLE001 - the waiting requests get the error and answer 503
            if not op.done.done():
                op.done.set_exception(exc)
            return

        def relay(f: asyncio.Future) -> None:
            if op.done.done():
                return
            if f.cancelled():
                op.done.set_exception(KafkaError("batch cancelled"))
            elif (exc := f.exception()) is not None:
                op.done.set_exception(exc)
            else:
                meta = f.result()
                if op.records:
                    guard.acked(tp[1], meta.offset, op.records)
                op.done.set_result(meta)

        ack.add_done_callback(relay)

    async def stop(self) -> None:
        await self.guard.stop()
        for task in (self._connector, self._flusher):
            await stop_task(task)
        if self._producer is not None:
            try:        # bounded: a broker that does not answer must not hold the shutdown
                await asyncio.wait_for(self._producer.stop(), 10.0)
            except TimeoutError:
                logger.warning("the events producer did not close within 10 s; left behind")
            except Exception:  # noqa: BLE001 - closing: nothing to do about it
                pass
            self._producer = None
