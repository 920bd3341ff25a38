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

import msgpack
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.config import StreamingSettings
from streaming.errors import BrokerUnavailable
from streaming.topics import ensure_topics

logger = logging.getLogger(__name__)


def event_key(tenant: str, session_id: str) -> bytes:
    """The partitioning key: one session's events stay in order on one partition."""
    return f"{tenant}\x1f{session_id}".encode()


def encode_event(event: dict) -> bytes:
    return msgpack.packb(event, use_bin_type=True)


def decode_event(value: bytes) -> object:
    return msgpack.unpackb(value, raw=False, strict_map_key=False)


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
                futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError, OSError, BrokerUnavailable) as exc:
            self._topics_checked = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise BrokerUnavailable(f"event log did not acknowledge within {self.timeout_s}s: {self.last_error}",
                                    field="broker") from None

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None
