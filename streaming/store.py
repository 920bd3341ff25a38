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

import time
from collections.abc import Awaitable, Callable

import msgpack
from redis.exceptions import NoScriptError

from strata.shared import keys as K
from strata.shared.online_store.client import connect
from strata.shared.ranking.session_update import decode_states, encode_state
from strata.streaming.effects import Impression, Plan, Snapshot, StoreReads

_READ = """
local q = cmsgpack.unpack(ARGV[1])
local out = {{}, {}, {}, {}, {}}
if #q[1] > 0 then out[1] = redis.call('HMGET', KEYS[1], unpack(q[1])) end
local members = q[2]
for lo = 1, #members, 4000 do
  local hi = math.min(lo + 3999, #members)
  local a = redis.call('SMISMEMBER', q[6], unpack(members, lo, hi))
  local b = redis.call('SMISMEMBER', q[7], unpack(members, lo, hi))
  for i = 1, #a do out[2][lo + i - 1] = a[i] + b[i] end
end
for i, k in ipairs(q[3]) do out[3][i] = redis.call('HMGET', k, 'st', 'recent') end
for i, k in ipairs(q[4]) do out[4][i] = redis.call('HGETALL', k) end
for i, k in ipairs(q[5]) do out[5][i] = redis.call('SMEMBERS', k) end
return cmsgpack.pack(out)
"""

# p: 1 watermarks expected [f, v, ...] (v = -1: none), 2 seen members, 3 seen bucket keys {current, previous},
# 4 the current bucket's expiry (unix ms), 5 other ops {{cmd, args...}, ...}, 6 HINCRBY [key, field, n, ...],
# 7 long-term vector adds [key, field, dim, float64 bytes, ...], 8 sessions [key, st, vec|"", recent, expire at
# (unix ms; 0: the key's expiry stays), ...], 9 updated ms, 10 invalidation message ("" none), 11 new
# watermarks [f, v, ...]
_APPLY = """
local p = cmsgpack.unpack(ARGV[1])
local wm = p[1]
for i = 1, #wm, 2 do
  local cur = redis.call('HGET', KEYS[1], wm[i])
  if wm[i + 1] == -1 then
    if cur then return 0 end
  elseif tonumber(cur) ~= wm[i + 1] then
    return 0
  end
end
local members = p[2]
local cur_bucket, prev_bucket = p[3][1], p[3][2]
for lo = 1, #members, 4000 do
  local hi = math.min(lo + 3999, #members)
  for _, key in ipairs({cur_bucket, prev_bucket}) do
    for _, hit in ipairs(redis.call('SMISMEMBER', key, unpack(members, lo, hi))) do
      if hit == 1 then return 0 end
    end
  end
end
for lo = 1, #members, 4000 do
  redis.call('SADD', cur_bucket, unpack(members, lo, math.min(lo + 3999, #members)))
end
if #members > 0 then redis.call('PEXPIREAT', cur_bucket, p[4]) end
for _, op in ipairs(p[5]) do redis.call(unpack(op)) end
local inc = p[6]
for i = 1, #inc, 3 do redis.call('HINCRBY', inc[i], inc[i + 1], inc[i + 2]) end
local va = p[7]
for i = 1, #va, 4 do
  local n = va[i + 2]
  local fmt = '<' .. string.rep('d', n)
  local add = {struct.unpack(fmt, va[i + 3])}
  local cur = redis.call('HGET', va[i], va[i + 1])
  if cur and #cur == 8 * n then
    local old = {struct.unpack(fmt, cur)}
    for d = 1, n do add[d] = add[d] + old[d] end
  end
  redis.call('HSET', va[i], va[i + 1], struct.pack(fmt, unpack(add, 1, n)))
end
local ss = p[8]
local updated = p[9]
for i = 1, #ss, 5 do
  if ss[i + 2] == '' then
    redis.call('HSET', ss[i], 'st', ss[i + 1], 'updated_ms', updated, 'recent', ss[i + 3])
  else
    redis.call('HSET', ss[i], 'st', ss[i + 1], 'updated_ms', updated, 'recent', ss[i + 3], 'vec', ss[i + 2])
  end
  if ss[i + 4] > 0 then redis.call('PEXPIREAT', ss[i], ss[i + 4]) end
end
if p[10] ~= '' then redis.call('PUBLISH', KEYS[2], p[10]) end
local nw = p[11]
for i = 1, #nw, 2 do redis.call('HSET', KEYS[1], nw[i], nw[i + 1]) end
return 1
"""


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)     # the server's cmsgpack reads str/raw, not bin


class StreamStore:
    def __init__(self, url: str, timeout_s: float = 5.0, dedup_ttl_s: float = 7 * 86400.0) -> None:
        self.r = connect(url, timeout_s, field="streaming.store")
        self._read = self.r.register_script(_READ)
        self._apply = self.r.register_script(_APPLY)
        self.dedup_ms = max(int(dedup_ttl_s * 1000), 1)

    async def read(self, reads: StoreReads, now_ms: int | None = None) -> Snapshot:
        """The snapshot a plan is computed from; event ids are checked in the dedup bucket of ``now_ms``."""
        bucket = (now_ms if now_ms is not None else int(time.time() * 1000)) // self.dedup_ms
        query = read_query(reads, bucket)
        raw = await self._read(keys=[K.WATERMARK_KEY], args=[_pack(query)])
        return parse_snapshot(query, raw, bucket)

    async def write(self, plan: Plan) -> bool:
        """Apply the plan atomically; False when the snapshot it was computed from is stale."""
        return await (await self.send_write(plan))()

    async def send_write(self, plan: Plan) -> Callable[[], Awaitable[bool]]:
        """Send the plan's write script now (the bytes are with the socket when this returns) and give back
        the coroutine function that waits for its answer, so the caller can plan the next batch meanwhile."""
        blob = write_blob(plan, self.dedup_ms)
        keys = [K.WATERMARK_KEY, K.INVALIDATION_CHANNEL]
        pool = self.r.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_command("EVALSHA", self._apply.sha, len(keys), *keys, blob)
        except BaseException:
            await conn.disconnect()
            await pool.release(conn)
            raise

        async def answer() -> bool:
            try:
                try:
                    res = await conn.read_response()
                except NoScriptError:           # first use on this server: load the script and run it
                    res = await self._apply(keys=keys, args=[blob])
                return bool(res)
            except BaseException:
                await conn.disconnect()         # an unread answer must not reach the next command
                raise
            finally:
                await pool.release(conn)

        return answer

    async def close(self) -> None:
        await self.r.aclose()


def read_query(reads: StoreReads, bucket: int) -> list:
    """The read script's argument (before packing): what the plan depends on."""
    return [list(reads.wm_fields), list(reads.seen_members), list(reads.session_keys), list(reads.impression_keys),
            list(reads.pending_keys), K.seen_bucket_key(bucket), K.seen_bucket_key(bucket - 1)]


def parse_snapshot(query: list, raw: bytes, bucket: int) -> Snapshot:
    """The read script's answer to ``query`` -> Snapshot."""
    wm_fields, seen, sessions, imps, pend = query[:5]
    wm_raw, seen_raw, ses_raw, imp_raw, pend_raw = msgpack.unpackb(raw, raw=True)
    snap = Snapshot({f: (int(v) if v else -1) for f, v in zip(wm_fields, wm_raw, strict=True)},
                    {k for k, v in zip(seen, seen_raw, strict=True) if v}, {}, {}, {}, bucket)
    states = decode_states([st or None for st, _ in ses_raw])
    for s, (_, recent), (state, n, ttl_at) in zip(sessions, ses_raw, states, strict=True):
        snap.sessions[s] = (state, n)
        if recent:
            snap.recent[s] = recent
        if ttl_at:
            snap.ttl_at[s] = ttl_at
    for k, flat in zip(imps, imp_raw, strict=True):
        snap.impressions[k] = _impression(dict(zip(flat[::2], flat[1::2], strict=True)))
    for k, members in zip(pend, pend_raw, strict=True):
        snap.pending[k] = {m.decode() for m in members}
    return snap


def write_blob(plan: Plan, dedup_ms: int) -> bytes:
    """The write script's argument for ``plan`` (see ``_APPLY`` for the layout)."""
    b = plan.seen_bucket
    inc = [x for (k, f), n in plan.incr.items() if n for x in (k, f, n)]
    lt = [x for k, v in plan.lt.items() for x in (k, "lt", v.shape[0], v.astype("<f8").tobytes())]
    ss = [x for w in plan.session_writes
          for x in (w.key, encode_state(w.acc, w.ref_ms, w.events, w.ttl_at), w.vec or "", w.recent, w.expire_at)]
    msg = msgpack.packb([list(s) for s in plan.sessions], use_bin_type=True) if plan.sessions else ""
    return _pack([[x for f, v in plan.wm_expected.items() for x in (f, v)], plan.seen_new,
                  [K.seen_bucket_key(b), K.seen_bucket_key(b - 1)], (b + 2) * dedup_ms, plan.ops, inc, lt,
                  ss, plan.updated_ms, msg, [x for f, v in plan.wm_new.items() for x in (f, v)]])


def _impression(raw: dict[bytes, bytes]) -> Impression | None:
    if not raw or b"slot" not in raw:
        return None
    items = raw[b"items"].decode().split(K.FIELD_SEP) if raw.get(b"items") else []
    clicked = {k[8:].decode() for k in raw if k.startswith(b"clicked:")}
    return Impression(raw[b"slot"].decode(), int(raw[b"ts"]), items, clicked)

