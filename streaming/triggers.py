"""Real-time triggers (journeys) on topic ``triggers``, published from the store's outbox.

``post_purchase`` messages are queued in the outbox by the same atomic write that applies the purchase;
an ``add_to_cart`` sets a per-session deadline (event time + ``abandoned_cart_s``) that a purchase in the
session clears; its ZSET member is the JSON array ``[tenant, session, user]`` (no separator an id could
break). This relay moves due deadlines into the outbox as ``abandoned_cart`` messages (one script: atomic)
and publishes the outbox with acks=all before trimming it: at least once, and every message carries a
deterministic ``trigger_id`` for consumers to drop repeats.

It drains in batches of ``BATCH`` (one produce batch each) for as long as the outbox is not empty, so it keeps
up with far more than the ingest's sustained rate (measured in the tests). An entry it cannot turn into a
message (a poisoned one) is dead-lettered with the reason and replaced by an empty tombstone in the same
pass, so it is dead-lettered once and never blocks the entries behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from strata.shared import keys as K
from strata.streaming import dead_letter

logger = logging.getLogger(__name__)
BATCH = 2000
_TOMBSTONE = b""

_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 2000)
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
  redis.call('RPUSH', KEYS[2], cjson.encode({member = due[i], deadline = due[i + 1]}))
end
return #due / 2
"""


def abandoned_cart_message(raw: dict) -> bytes:
    member = raw["member"]
    if member.startswith("["):
        tenant, session_id, user_id = orjson.loads(member)
    else:                                      # written by an earlier version: \x1f-joined
        tenant, session_id, user_id = member.split(K.FIELD_SEP)
    if not all(type(x) is str for x in (tenant, session_id, user_id)):
        raise ValueError("cart member must hold three strings")
    deadline = int(float(raw["deadline"]))
    return orjson.dumps({"trigger_id": f"abandoned_cart:{tenant}:{session_id}:{deadline}", "type": "abandoned_cart",
                         "tenant": tenant, "user_id": user_id, "session_id": session_id, "ts": deadline})


def to_message(raw: bytes) -> tuple[bytes, str]:
    """An outbox entry -> (the trigger message, its type). Raises on an entry that cannot be one."""
    msg = orjson.loads(raw)
    if type(msg) is not dict:
        raise ValueError(f"an outbox entry must be an object, got {type(msg).__name__}")
    if "member" in msg:
        return abandoned_cart_message(msg), "abandoned_cart"
    return raw, str(msg.get("type", "unknown"))[:40]


class TriggerRelay:
    def __init__(self, r, producer, topic: str, metrics, dead_letter_topic: str = "events.dlq",
                 interval_s: float = 0.2) -> None:
        self.r = r
        self.producer = producer
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.metrics = metrics
        self.interval_s = interval_s
        self._due = r.register_script(_DUE)

    async def run(self) -> None:
        while True:
            n = 0
            try:
                n = await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:     # store or broker down: try again next tick
                logger.warning("trigger relay: %s: %s", type(exc).__name__, exc)
            if n < BATCH:                # a full batch: more is waiting, go on at once
                await asyncio.sleep(self.interval_s)

    async def once(self) -> int:
        """Publish (up to) one batch of the outbox; returns how many entries it took off."""
        await self._due(keys=[K.CART_DEADLINES_KEY, K.TRIGGER_OUTBOX_KEY], args=[int(time.time() * 1000)])
        entries = await self.r.lrange(K.TRIGGER_OUTBOX_KEY, 0, BATCH - 1)
        if not entries:
            return 0
        batch = self.producer.create_batch()
        kinds: list[str] = []
        poisoned: list[tuple[int, bytes, str]] = []
        acks = []
        for i, raw in enumerate(entries):
            if raw == _TOMBSTONE:
                continue
            try:
                value, kind = to_message(raw)
            except Exception as exc:  # noqa: BLE001 - a poisoned entry: dead-lettered, never retried
                poisoned.append((i, raw, f"{type(exc).__name__}: {exc}"))
                continue
            if batch.append(key=None, value=value, timestamp=None) is None:      # full: send it, open another
                acks.append(await self.producer.send_batch(batch, self.topic, partition=0))
                batch = self.producer.create_batch()
                batch.append(key=None, value=value, timestamp=None)
            kinds.append(kind)
        if kinds:
            acks.append(await self.producer.send_batch(batch, self.topic, partition=0))
        if poisoned:
            await self._dead_letter(poisoned)
        await asyncio.gather(*acks)
        for kind in kinds:
            self.metrics.instruments.inc("triggers_sent_total", (kind,))
        await self.r.ltrim(K.TRIGGER_OUTBOX_KEY, len(entries), -1)
        return len(entries)

    async def _dead_letter(self, poisoned: list[tuple[int, bytes, str]]) -> None:
        """Dead-letter poisoned entries, then tombstone them in place: a pass that fails later (the broker)
        re-reads the outbox without them."""
        now_ms = int(time.time() * 1000)
        sends = [await self.producer.send(self.dead_letter_topic, dead_letter.record(
            "trigger-relay", "bad_trigger", "outbox", reason, now_ms, raw)) for _, raw, reason in poisoned]
        await asyncio.gather(*sends)
        async with self.r.pipeline(transaction=False) as pipe:
            for i, _, _ in poisoned:
                pipe.lset(K.TRIGGER_OUTBOX_KEY, i, _TOMBSTONE)
            await pipe.execute()
        self.metrics.instruments.inc("triggers_dead_lettered_total", by=len(poisoned))
        logger.error("trigger relay: %d outbox entr(ies) dead-lettered, first: %s", len(poisoned), poisoned[0][2])
