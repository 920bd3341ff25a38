"""The processor's side of the online store: one pipelined read per batch, one atomic scripted write.

The write script first checks that the partition watermarks are the ones the plan was computed from and
that none of the plan's event ids was recorded meanwhile; then it runs every write of the plan. Either
all of a batch's effects and its new watermarks land, or none: a processor killed anywhere leaves the
store as before or after the batch, never in between, and a stale owner (after a rebalance) cannot
overwrite a newer one. Single Valkey/Redis node (a cluster needs the keys grouped per slot).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared import keys as K
from shared.session_update import decode_acc
from streaming.effects import Impression, Plan, Snapshot, StoreReads

_APPLY = """
local wmkey = KEYS[1]
local i = 1
local n_wm = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_wm do
  local cur = redis.call('HGET', wmkey, ARGV[i])
  local exp = ARGV[i + 1]
  if exp == '-1' then
    if cur then return 0 end
  elseif cur ~= exp then
    return 0
  end
  i = i + 2
end
local n_seen = tonumber(ARGV[i]); i = i + 1
for j = i, i + n_seen - 1 do
  if redis.call('EXISTS', ARGV[j]) == 1 then return 0 end
end
i = i + n_seen
local n = #ARGV
while i <= n do
  local argc = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + argc))
  i = i + argc + 1
end
return 1
"""


class StreamStore:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.r = aioredis.from_url(url.replace("valkey://", "redis://", 1), retry=Retry(NoBackoff(), 0),
                                   socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._apply = self.r.register_script(_APPLY)

    async def read(self, reads: StoreReads) -> Snapshot:
        wm_fields = sorted(reads.wm_fields)
        seen = sorted(reads.seen_keys)
        sessions = sorted(reads.session_keys)
        imps = sorted(reads.impression_keys)
        pend = sorted(reads.pending_keys)
        async with self.r.pipeline(transaction=False) as p:
            p.hmget(K.WATERMARK_KEY, wm_fields) if wm_fields else p.ping()
            p.mget(seen) if seen else p.ping()
            for s in sessions:
                p.hmget(s, "acc", "ref_ms", "events")
            for k in imps:
                p.hgetall(k)
            for k in pend:
                p.smembers(k)
            out = await p.execute()
        wm_raw, seen_raw = out[0], out[1]
        pos = 2
        snap = Snapshot(
            {f: (int(v) if v is not None else -1) for f, v in zip(wm_fields, wm_raw, strict=True)} if wm_fields else {},
            {k for k, v in zip(seen, seen_raw, strict=True) if v is not None} if seen else set(), {}, {}, {})
        for s in sessions:
            acc, ref, n = out[pos]
            pos += 1
            snap.sessions[s] = (decode_acc(acc, ref), int(n) if n is not None else 0)
        for k in imps:
            snap.impressions[k] = _impression(out[pos])
            pos += 1
        for k in pend:
            snap.pending[k] = {m.decode() for m in out[pos]}
            pos += 1
        return snap

    async def write(self, plan: Plan) -> bool:
        """Apply the plan atomically; False when the snapshot it was computed from is stale."""
        args: list = [len(plan.wm_expected)]
        for f, v in plan.wm_expected.items():
            args += [f, v]
        args.append(len(plan.seen_new))
        args += plan.seen_new
        for op in plan.ops:
            args.append(len(op))
            args += op
        if plan.wm_new:
            args += [2 + 2 * len(plan.wm_new), "HSET", K.WATERMARK_KEY]
            for f, v in plan.wm_new.items():
                args += [f, v]
        return bool(await self._apply(keys=[K.WATERMARK_KEY], args=args))

    async def close(self) -> None:
        await self.r.aclose()


def _impression(raw: dict[bytes, bytes]) -> Impression | None:
    if not raw or b"slot" not in raw:
        return None
    items = raw[b"items"].decode().split(K.FIELD_SEP) if raw.get(b"items") else []
    clicked = {k[8:].decode() for k in raw if k.startswith(b"clicked:")}
    return Impression(raw[b"slot"].decode(), int(raw[b"ts"]), items, clicked)
