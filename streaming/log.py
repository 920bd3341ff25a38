"""EventLog: the ingest side of the Kafka-protocol log (Tansu locally, Kafka in production), via aiokafka.

Records are acknowledged by ``acks=all`` before ``append`` returns; a broker that does not answer within
``timeout_s`` raises ``BrokerUnavailable`` (503 + Retry-After) and nothing is claimed written. The producer
connects in the background and reconnects by itself, so the service starts and recovers without the
broker. No transactions: idempotence comes from event ids, applied by the processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.config import StreamingSettings
from streaming.errors import BrokerUnavailable

try:
    from streaming._murmur2 import partition
except ImportError:        # no C compiler at install time: aiokafka's own (pure-Python) murmur2, same partitions
    from aiokafka.partitioner import murmur2

    def partition(key: bytes, n: int) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % n
from streaming.topics import ensure_topics

logger = logging.getLogger(__name__)


class EventLog:
    def __init__(self, cfg: StreamingSettings) -> None:
        self.cfg = cfg
        self.timeout_s = cfg.produce_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task | None = None
        self.last_error = "not connected yet"
        self._topics_checked = False

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Try to connect now; if the broker is down, keep trying in the background."""
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
            self.last_error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        logger.info("event log connected", extra={"broker": self.cfg.broker})
        return True

    async def _connect_loop(self) -> None:
        while not await self._connect_once():
            await asyncio.sleep(0.5)

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
                futures = await self._send(producer, records)
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError, OSError, BrokerUnavailable) as exc:
            self._topics_checked = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise BrokerUnavailable(f"event log did not acknowledge within {self.timeout_s}s: {self.last_error}",
                                    field="broker") from None

    @staticmethod
    async def _send(producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes | None, bytes]]) -> list:
        """Queue the records as one batch per partition (a keyed record goes where Kafka's default partitioner
        puts it, so a session's events stay in order on one partition); keyless records go one by one.
        Appending to a batch builder costs ~1 us a record, ``producer.send`` ~20 (a future, a coroutine and
        aiokafka's pure-Python murmur2 each)."""
        futures = []
        builders: dict[tuple[str, int], object] = {}
        counts: dict[str, int] = {}
        for topic, key, value in records:
            if key is None:
                futures.append(await producer.send(topic, value))
                continue
            n = counts.get(topic)
            if n is None:
                n = counts[topic] = len(await producer.partitions_for(topic))
            tp = (topic, partition(key, n))
            batch = builders.get(tp)
            if batch is None:
                batch = builders[tp] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:      # full: send it, start another
                futures.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
                batch = builders[tp] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise BrokerUnavailable(f"an event of {len(value)} bytes does not fit a batch", field="events")
        for (topic, part), batch in builders.items():
            futures.append(await producer.send_batch(batch, topic, partition=part))
        return futures

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None
