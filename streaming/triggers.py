"""Real-time triggers (journeys) on topic ``triggers``, published from the store's outbox.

``post_purchase`` messages are queued in the outbox by the same atomic write that applies the purchase;
an ``add_to_cart`` sets a per-session deadline (event time + ``abandoned_cart_s``) that a purchase in the
session clears. This relay moves due deadlines into the outbox as ``abandoned_cart`` messages (one
script: atomic) and publishes the outbox with acks=all before trimming it: at least once, and every
message carries a deterministic ``trigger_id`` for consumers to drop repeats.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from strata.shared import keys as K

logger = logging.getLogger(__name__)

_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 500)
for i = 1, #due, 2 do
  redis.call('ZREM', KEYS[1], due[i])
  redis.call('RPUSH', KEYS[2], cjson.encode({member = due[i], deadline = due[i + 1]}))
end
return #due / 2
"""


def abandoned_cart_message(raw: dict) -> bytes:
    tenant, session_id, user_id = raw["member"].split(K.FIELD_SEP)
    deadline = int(float(raw["deadline"]))
    return orjson.dumps({"trigger_id": f"abandoned_cart:{tenant}:{session_id}:{deadline}", "type": "abandoned_cart",
                         "tenant": tenant, "user_id": user_id, "session_id": session_id, "ts": deadline})


class TriggerRelay:
    def __init__(self, r, producer, topic: str, metrics, interval_s: float = 0.2) -> None:
        self.r = r
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self.interval_s = interval_s
        self._due = r.register_script(_DUE)

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:     # store or broker down: try again next tick
                logger.warning("trigger relay: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.interval_s)

    async def once(self) -> int:
        await self._due(keys=[K.CART_DEADLINES_KEY, K.TRIGGER_OUTBOX_KEY], args=[int(time.time() * 1000)])
        batch = await self.r.lrange(K.TRIGGER_OUTBOX_KEY, 0, 199)
        if not batch:
            return 0
        futures, kinds = [], []
        for raw in batch:
            msg = orjson.loads(raw)
            value = abandoned_cart_message(msg) if "member" in msg else raw
            kinds.append("abandoned_cart" if "member" in msg else msg.get("type", "unknown"))
            futures.append(await self.producer.send(self.topic, value))
        await asyncio.gather(*futures)
        for kind in kinds:
            self.metrics.instruments.inc("triggers_sent_total", (kind,))
        await self.r.ltrim(K.TRIGGER_OUTBOX_KEY, len(batch), -1)
        return len(batch)
