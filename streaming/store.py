"""The processor's side of the online store: one scripted read per batch, one atomic scripted write.

Both scripts take and return one msgpack blob (``cmsgpack`` in the server's Lua): a batch touching
thousands of keys costs one round trip and no per-argument encoding in the client.

The write script first checks that the partition watermarks are the ones the plan was computed from and
that none of the plan's event ids was recorded meanwhile; then it runs every write of the plan. Either
all of a batch's effects and its new watermarks land, or none: a processor killed anywhere leaves the
store as before or after the batch, never in between, and a stale owner (after a rebalance) cannot
overwrite a newer one. Single Valkey/Redis node (a cluster needs the keys grouped per slot).
"""

from __future__ import annotations

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared import keys as K
from shared.session_update import decode_acc
from streaming.effects import Impression, Plan, Snapshot, StoreReads

_READ = """
local q = cmsgpack.unpack(ARGV[1])
local out = {{}, {}, {}, {}, {}}
for i, f in ipairs(q[1]) do out[1][i] = redis.call('HGET', KEYS[1], f) end
for i, k in ipairs(q[2]) do out[2][i] = redis.call('EXISTS', k) end
for i, k in ipairs(q[3]) do out[3][i] = redis.call('HMGET', k, 'acc', 'ref_ms', 'events') end
for i, k in ipairs(q[4]) do out[4][i] = redis.call('HGETALL', k) end
for i, k in ipairs(q[5]) do out[5][i] = redis.call('SMEMBERS', k) end
return cmsgpack.pack(out)
"""

_APPLY = """
local p = cmsgpack.unpack(ARGV[1])
for _, c in ipairs(p[1]) do
  local cur = redis.call('HGET', KEYS[1], c[1])
  if c[2] == -1 then
    if cur then return 0 end
  elseif tonumber(cur) ~= c[2] then
    return 0
  end
end
for _, k in ipairs(p[2]) do
  if redis.call('EXISTS', k) == 1 then return 0 end
end
for _, op in ipairs(p[3]) do
  if op[1] == 'VADD' then
    local fmt = '<' .. string.rep('d', op[4])
    local add = {struct.unpack(fmt, op[5])}
    local cur = redis.call('HGET', op[2], op[3])
    if cur and #cur == 8 * op[4] then
      local old = {struct.unpack(fmt, cur)}
      for d = 1, op[4] do add[d] = add[d] + old[d] end
    end
    redis.call('HSET', op[2], op[3], struct.pack(fmt, unpack(add, 1, op[4])))
  else
    redis.call(unpack(op))
  end
end
for _, c in ipairs(p[4]) do redis.call('HSET', KEYS[1], c[1], c[2]) end
return 1
"""


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)     # the server's cmsgpack reads str/raw, not bin


class StreamStore:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.r = aioredis.from_url(url.replace("valkey://", "redis://", 1), retry=Retry(NoBackoff(), 0),
                                   socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._read = self.r.register_script(_READ)
        self._apply = self.r.register_script(_APPLY)

    async def read(self, reads: StoreReads) -> Snapshot:
        wm_fields = list(reads.wm_fields)
        seen = list(reads.seen_keys)
        sessions = list(reads.session_keys)
        imps = list(reads.impression_keys)
        pend = list(reads.pending_keys)
        raw = await self._read(keys=[K.WATERMARK_KEY], args=[_pack([wm_fields, seen, sessions, imps, pend])])
        wm_raw, seen_raw, ses_raw, imp_raw, pend_raw = msgpack.unpackb(raw, raw=True)
        snap = Snapshot({f: (int(v) if v else -1) for f, v in zip(wm_fields, wm_raw, strict=True)},
                        {k for k, v in zip(seen, seen_raw, strict=True) if v == 1}, {}, {}, {})
        for s, (acc, ref, n) in zip(sessions, ses_raw, strict=True):
            snap.sessions[s] = (decode_acc(acc or None, ref or None), int(n) if n else 0)
        for k, flat in zip(imps, imp_raw, strict=True):
            snap.impressions[k] = _impression(dict(zip(flat[::2], flat[1::2], strict=True)))
        for k, members in zip(pend, pend_raw, strict=True):
            snap.pending[k] = {m.decode() for m in members}
        return snap

    async def write(self, plan: Plan) -> bool:
        """Apply the plan atomically; False when the snapshot it was computed from is stale."""
        blob = _pack([[[f, v] for f, v in plan.wm_expected.items()], plan.seen_new, plan.ops,
                      [[f, v] for f, v in plan.wm_new.items()]])
        return bool(await self._apply(keys=[K.WATERMARK_KEY], args=[blob]))

    async def watermark(self, wm_field: str) -> int:
        v = await self.r.hget(K.WATERMARK_KEY, wm_field)
        return int(v) if v is not None else -1

    async def close(self) -> None:
        await self.r.aclose()


def _impression(raw: dict[bytes, bytes]) -> Impression | None:
    if not raw or b"slot" not in raw:
        return None
    items = raw[b"items"].decode().split(K.FIELD_SEP) if raw.get(b"items") else []
    clicked = {k[8:].decode() for k in raw if k.startswith(b"clicked:")}
    return Impression(raw[b"slot"].decode(), int(raw[b"ts"]), items, clicked)

