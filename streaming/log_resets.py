"""Detecting a reset of the events log, loudly.

Two detectors, both ending in ``LogResets.alert`` (metric ``strata_processor_log_resets_total{how}``, an ERROR
log line, a record under ``keys.LOG_RESETS_KEY`` that makes ``/readyz`` of the processor and of the ingest
report ``degraded`` for ``streaming.log_reset_alert_s``):

- ``how="topic_id"``: the topic's id (``log_identity``) differs from the one the watermarks were stored with.
  The watermarks of that topic are dropped and the id replaced in one script, and the processor reads the
  topic again from its start (a recreated topic may hold records below a committed offset of the old one).
- ``how="event_id"``: a record at or below its partition's watermark whose event id was never applied
  (``effects.Planner.plan``): works on any broker. The planner has already moved that watermark and applied
  the event; the topic id is then checked at once.

Either way events keep being applied exactly once by their ids while the watermarks catch up.
"""

from __future__ import annotations

import logging
import time

import orjson

from strata.shared import keys as K

logger = logging.getLogger(__name__)

# Drop the watermarks of a topic whose id changed and store the new id; returns the old id ("" when none was
# stored: the id is only recorded). ARGV: topic, new id.
_SWAP = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return false end
if old then
  local prefix = ARGV[1] .. ':'
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', KEYS[2], f) end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old or ''
"""


class LogResets:
    def __init__(self, r, metrics, alert_s: float) -> None:
        self.r = r
        self.metrics = metrics
        self.alert_ms = int(alert_s * 1000)
        self._swap = r.register_script(_SWAP)
        self.last: dict | None = None          # the latest reset this process detected
        self.until_ms = 0                      # /readyz is degraded until then

    async def record_id(self, topic: str, topic_id: str | None) -> bool:
        """Compare the topic's id with the one its watermarks belong to; True if it changed (a reset: its
        watermarks were dropped and the caller must read the topic from its start)."""
        if topic_id is None:
            return False
        old = await self._swap(keys=[K.LOG_IDS_KEY, K.WATERMARK_KEY], args=[topic, topic_id])
        if not old:                            # the same id, or the first one recorded
            return False
        await self.alert(topic, "topic_id", {"old_topic_id": old.decode(), "topic_id": topic_id})
        return True

    async def alert(self, where: str, how: str, detail: dict) -> None:
        now_ms = int(time.time() * 1000)
        self.last = {"where": where, "how": how, "detected_ms": now_ms, **detail}
        self.until_ms = now_ms + self.alert_ms
        self.metrics.instruments.inc("log_resets_total", (how,))
        logger.error("the events log was reset (%s: %s %s): events it held that were not yet applied are lost; "
                     "applying by event id", how, where, detail)
        try:
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.hset(K.LOG_RESETS_KEY, where, orjson.dumps(self.last))
                pipe.pexpire(K.LOG_RESETS_KEY, self.alert_ms)
                await pipe.execute()
        except Exception as exc:               # the alert never fails the batch; the metric and log stand
            logger.warning("could not record the log reset in the store: %s: %s", type(exc).__name__, exc)

    def degraded(self) -> dict | None:
        return self.last if self.last is not None and time.time() * 1000 < self.until_ms else None


async def recorded_resets(r) -> dict[str, dict]:
    """The resets detected within the alert window, by where (for /readyz of the ingest)."""
    raw = await r.hgetall(K.LOG_RESETS_KEY)
    return {k.decode(): orjson.loads(v) for k, v in raw.items()}
