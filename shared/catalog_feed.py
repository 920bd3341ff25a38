"""The catalog through the log: every replica of every tier applies the same catalog changes in the same order.

``POST /v1/items`` (the origin) appends one record per item to the compacted ``catalog`` topic (config section
``catalog``) and answers once the log acknowledged the records (acks=all) and this replica applied them, so the
caller reads its own write. Every origin replica and every edge reads the topic from its start when it launches
(the bundle is the base; the topic carries the changes since the export) and then follows it; each applies the
records in log order, so two replicas given the same topic agree item for item, and a restarted one replays it.

- **One order.** Every record is written to partition 0 (a broker that auto-creates the topic with more
  partitions changes nothing), so there is one total order of changes and replicas cannot diverge on a race
  between two writers.
- **Compaction.** The record key is the item id and the value the item's whole row (``ItemUpdate``), so a
  compacted topic keeps exactly the latest row of every item changed since the export. The topic is created
  with ``cleanup.policy=compact``; a broker that ignores it keeps every record, which replays to the same state.
- **Value**: JSON ``{"v": 1, "ts": ms, "tenant", "key_id", "item": {item_id, title, category, price, stock,
  age_restricted}}`` (who changed what, when: the catalog's audit trail).
- **Failures.** A record that cannot be read is skipped, logged and counted (``skipped``); an apply that raises
  is logged and counted (``apply_failures``), never silently. A replica is not ready (``replayed`` False) until
  it applied the whole topic as it stood at launch: it would otherwise serve stale stock and age flags. A
  broker that is down at launch is retried in the background; ``publish`` then answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, fields
from typing import Any

import orjson

from strata.shared.config import CatalogSettings
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.errors import InternalError, ServiceUnavailable, describe
from strata.shared.serving.tasks import stop_task

logger = logging.getLogger(__name__)
VERSION = 1
PARTITION = 0
_ALREADY_EXISTS = 36
_RESULTS_KEPT = 100_000          # apply results waiting for their publisher, by offset (oldest dropped first)
FAILED = object()                # the apply result of a record whose apply raised
_ITEM_FIELDS = {f.name: f.type for f in fields(ItemUpdate)}

# Applies a batch of records in log order; returns one result per update (what ``publish`` hands back).
Apply = Callable[[list[ItemUpdate]], Awaitable[Sequence[Any]]]


def configured(cfg: CatalogSettings) -> bool:
    return cfg.broker.strip().lower() not in ("", "none")


def encode_record(update: ItemUpdate, tenant: str | None, key_id: str | None, ts_ms: int | None = None) -> bytes:
    return orjson.dumps({"v": VERSION, "ts": int(time.time() * 1000) if ts_ms is None else ts_ms,
                         "tenant": tenant, "key_id": key_id, "item": asdict(update)})


def decode_record(value: bytes | None) -> ItemUpdate:
    """The item row of one record; ValueError naming what is wrong."""
    if value is None:
        raise ValueError("no value (a tombstone: items are never deleted through the catalog topic)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if type(obj) is not dict or obj.get("v") != VERSION or type(obj.get("item")) is not dict:
        raise ValueError(f"not a version-{VERSION} catalog record")
    item = obj["item"]
    if item.keys() != _ITEM_FIELDS.keys():
        raise ValueError(f"item fields {sorted(item)} are not {sorted(_ITEM_FIELDS)}")
    ok = (type(item["item_id"]) is str and item["item_id"] and type(item["title"]) is str
          and type(item["category"]) is str and type(item["price"]) in (int, float)
          and type(item["stock"]) is int and type(item["age_restricted"]) is bool)
    if not ok:
        raise ValueError("an item field has the wrong type")
    return ItemUpdate(item["item_id"], item["title"], item["category"], float(item["price"]), item["stock"],
                      item["age_restricted"])


class CatalogFeed:
    """Follows the catalog topic and applies its records (``apply``); ``publish`` appends to it.

    ``start`` connects and replays the topic as it stood (bounded by ``timeout_s`` for the connect; a broker
    that is not there is retried in the background), then follows it until ``stop``."""

    def __init__(self, cfg: CatalogSettings, apply: Apply, name: str = "catalog") -> None:
        self.cfg = cfg
        self._apply = apply
        self.name = name
        self.replayed = False          # applied the topic as it stood at launch
        self.connected = False
        self.position = 0              # next offset to apply
        self.applied = 0               # records applied
        self.skipped = 0               # unreadable records
        self.apply_failures = 0        # records whose apply raised
        self.published = 0             # records this process appended
        self.last_error = ""
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task | None = None
        self._progress = asyncio.Event()
        self._results: OrderedDict[int, Any] = OrderedDict()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and replay (returns when the replay is done, or when the first connect failed: then the
        background task keeps trying and ``replayed`` stays False until it succeeds)."""
        first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(first), name=f"{self.name}-feed")
        await asyncio.wait([first, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done() and not first.done():
            self._task.result()      # raises what ended it

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self._close()

    async def _close(self) -> None:
        consumer, producer, self._consumer, self._producer = self._consumer, self._producer, None, None
        self.connected = False
        for client in (consumer, producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()

    async def _run(self, first: asyncio.Future) -> None:
        delay = 0.2
        while True:
            try:
                end = await self._connect()
                if not first.done():
                    await self._replay(end)
                    first.set_result(None)
                elif not self.replayed:
                    await self._replay(end)
                delay = 0.2
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = describe(exc)
                logger.warning("catalog topic %s at %s: %s; retrying in %.1f s", self.cfg.topic, self.cfg.broker,
                               self.last_error, delay)
                await self._close()
                if not first.done():
                    first.set_result(None)       # start returns; readiness says the catalog is not replayed
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _connect(self) -> int:
        """Create the topic if missing, open the consumer at ``position``; returns the topic's end offset."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        timeout = self.cfg.timeout_s
        async with asyncio.timeout(timeout * 2):
            await self._create_topic()
            consumer = AIOKafkaConsumer(bootstrap_servers=self.cfg.broker, group_id=None, enable_auto_commit=False,
                                        auto_offset_reset="earliest", fetch_max_wait_ms=self.cfg.poll_ms,
                                        request_timeout_ms=int(timeout * 1000) + 1000)
            await consumer.start()
            self._consumer = consumer
            tp = TopicPartition(self.cfg.topic, PARTITION)
            consumer.assign([tp])
            consumer.seek(tp, self.position)
            end = (await consumer.end_offsets([tp]))[tp]
        self.connected = True
        return int(end)

    async def _create_topic(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.cfg.broker,
                                    request_timeout_ms=int(self.cfg.timeout_s * 1000))
        try:
            await admin.start()
            resp = await admin.create_topics(
                [NewTopic(self.cfg.topic, 1, 1, topic_configs={"cleanup.policy": "compact"})],
                int(self.cfg.timeout_s * 1000))
            for name, code, message in resp.topic_errors:
                if code not in (0, _ALREADY_EXISTS):
                    raise ServiceUnavailable(f"cannot create topic {name}: error {code} {message}", field="catalog")
        finally:
            await admin.close()

    async def _replay(self, end: int) -> None:
        t0 = time.perf_counter()
        start = self.position
        while self.position < end:
            await self._read_once()
        self.replayed = True
        logger.info("catalog replayed", extra={"topic": self.cfg.topic, "records": end - start,
                                               "seconds": round(time.perf_counter() - t0, 3)})

    async def _follow(self) -> None:
        while True:
            await self._read_once()

    async def _read_once(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        batches = await consumer.getmany(timeout_ms=self.cfg.poll_ms, max_records=500)
        records = [r for batch in batches.values() for r in batch]
        if not records:
            return
        records.sort(key=lambda r: r.offset)
        offsets: list[int] = []
        updates: list[ItemUpdate] = []
        for r in records:
            if r.offset < self.position:          # seen already (a re-read after reconnecting)
                continue
            try:
                updates.append(decode_record(r.value))
                offsets.append(r.offset)
            except ValueError as exc:
                self.skipped += 1
                logger.error("catalog record %s@%d skipped: %s", self.cfg.topic, r.offset, exc)
        if updates:
            try:
                results = list(await self._apply(updates))
            except Exception:
                self.apply_failures += len(updates)
                logger.exception("catalog records %d..%d not applied", offsets[0], offsets[-1])
                results = [FAILED] * len(updates)
            self.applied += len(updates)
            for off, res in zip(offsets, results, strict=True):
                self._results[off] = res
            while len(self._results) > _RESULTS_KEPT:
                self._results.popitem(last=False)
        self.position = max(self.position, records[-1].offset + 1)
        self._progress.set()
        self._progress = asyncio.Event()

    # -- writing --------------------------------------------------------------------------------
    async def publish(self, updates: Sequence[ItemUpdate], tenant: str | None, key_id: str | None) -> list[Any]:
        """Append one record per update; returns the apply results of those records on this replica, once the
        log acknowledged them all and this replica applied them. 503 when the log is not reachable or that did
        not happen within ``timeout_s`` (acknowledged records are still applied, here and everywhere)."""
        if not self.connected:
            raise ServiceUnavailable(f"the catalog log ({self.cfg.broker}) is not reachable: {self.last_error}",
                                     field="catalog")
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                producer = await self._producer_started()
                ts = int(time.time() * 1000)
                futures = [await producer.send(self.cfg.topic, encode_record(u, tenant, key_id, ts),
                                               key=u.item_id.encode(), partition=PARTITION) for u in updates]
                metas = await asyncio.gather(*futures)
        except TimeoutError:
            raise ServiceUnavailable(f"the catalog log did not acknowledge within {self.cfg.timeout_s} s "
                                     "(catalog.timeout_s); nothing was applied", field="catalog") from None
        except Exception as exc:
            if isinstance(exc, ServiceUnavailable):
                raise
            raise ServiceUnavailable(f"the catalog log refused the records: {describe(exc)}",
                                     field="catalog") from exc
        self.published += len(metas)
        offsets = [m.offset for m in metas]
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                await self.wait_applied(max(offsets))
        except TimeoutError:
            raise ServiceUnavailable(f"the catalog log acknowledged the records (offsets {min(offsets)}.."
                                     f"{max(offsets)}) but this replica did not apply them within "
                                     f"{self.cfg.timeout_s} s; they will be applied", field="catalog") from None
        results = [self._results.pop(o, None) for o in offsets]
        if any(r is FAILED for r in results):
            raise InternalError("the catalog log took the records but this replica failed to apply them (logged); "
                                "they stay in the log")
        return results

    async def wait_applied(self, offset: int) -> None:
        """Until the record at ``offset`` is applied here."""
        while self.position <= offset:
            await self._progress.wait()

    async def _producer_started(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.cfg.broker, acks="all", linger_ms=0,
                                        enable_idempotence=False,
                                        request_timeout_ms=int(self.cfg.timeout_s * 1000))
            await producer.start()
            self._producer = producer
        return self._producer

    # -- ops ------------------------------------------------------------------------------------
    def status(self) -> dict:
        return {"topic": self.cfg.topic, "replayed": self.replayed, "connected": self.connected,
                "position": self.position, "applied": self.applied, "skipped": self.skipped,
                "apply_failures": self.apply_failures}

    def exposition(self, prefix: str) -> bytes:
        lines = [
            f"# HELP {prefix}_catalog_records_applied_total catalog topic records applied by this process",
            f"# TYPE {prefix}_catalog_records_applied_total counter",
            f"{prefix}_catalog_records_applied_total {self.applied}",
            f"# HELP {prefix}_catalog_records_skipped_total unreadable catalog topic records (logged)",
            f"# TYPE {prefix}_catalog_records_skipped_total counter",
            f"{prefix}_catalog_records_skipped_total {self.skipped}",
            f"# HELP {prefix}_catalog_apply_failures_total catalog records whose apply raised (logged)",
            f"# TYPE {prefix}_catalog_apply_failures_total counter",
            f"{prefix}_catalog_apply_failures_total {self.apply_failures}",
            f"# HELP {prefix}_catalog_replayed 1 once the catalog topic as it stood at launch is applied",
            f"# TYPE {prefix}_catalog_replayed gauge",
            f"{prefix}_catalog_replayed {int(self.replayed)}",
            f"# HELP {prefix}_catalog_offset next catalog topic offset this process applies",
            f"# TYPE {prefix}_catalog_offset gauge",
            f"{prefix}_catalog_offset {self.position}",
        ]
        return ("\n".join(lines) + "\n").encode()
