"""The processor's side of the online store: one scripted read per batch, one atomic scripted write.

Both scripts take and return one msgpack blob (``cmsgpack`` in the server's Lua): a batch touching
thousands of keys costs one round trip and no per-argument encoding in the client.

The write script first checks that the partition watermarks are the ones the plan was computed from and
that none of the plan's event ids was recorded meanwhile; then it runs every write of the plan. Either
all of a batch's effects and its new watermarks land, or none: a processor killed anywhere leaves the
store as before or after the batch, never in between, and a stale owner (after a rebalance) cannot
overwrite a newer one. That is one Valkey/Redis node; on a cluster (``redis+cluster://``) ``cluster_store.open_stream_store``
gives the journaled ``streaming.cluster_store.ClusterStreamStore`` instead, with the same calls.

``wait_replicas`` > 0: the write is followed by ``WAIT n timeout`` on the same connection, and fewer replicas
acknowledging in time fails the write (``ReplicationShortfall``, retriable): the processor redoes the batch
and commits no offset for it until a write (the redo's, a no-op on data) is acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from strata.shared import keys as K
from strata.shared.online_store.client import connect_required
from strata.shared.ranking.session_update import decode_states, encode_state
from strata.streaming.effects import Impression, Plan, Snapshot, StoreReads

# The reads after the watermarks (dedup members, session states, profiles, sets, impressions): the same on one
# node (``_READ``) and per node of a cluster (``cluster_store._READ_NODE``); ``q`` and ``out`` are set before.
_READ_BODY = """
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
for i, k in ipairs(q[8] or {}) do out[6][i] = redis.call('GET', k) end
return cmsgpack.pack(out)
"""

_READ = """
local q = cmsgpack.unpack(ARGV[1])
local out = {{}, {}, {}, {}, {}, {}}
if #q[1] > 0 then out[1] = redis.call('HMGET', KEYS[1], unpack(q[1])) end""" + _READ_BODY

# p: 1 watermarks expected [f, v, ...] (v = -1: none), 2 seen members, 3 seen bucket keys {current, previous},
# 4 the current bucket's expiry (unix ms), 5 other ops {{cmd, args...}, ...}, 6 HINCRBY [key, field, n, ...],
# 7 long-term vector adds [key, field, dim, float64 bytes, ...], 8 sessions [key, st, vec|"", recent, expire at
# (unix ms; 0: the key's expiry stays), ...], 9 updated ms, 10 invalidation message ("" none), 11 new
# watermarks [f, v, ...], 12 HINCRBYs that must not overflow int64 [key, field, n, ...], 13 profile keys to check
# (type, daily pass, size: each at its first write of the day by this processor, or given named affinities),
# 14 bandit keys written, 15 bounds {today (UTC day), affinity half-life (days), affinities kept per map, days of
# per-day counters kept, profile ttl ms, profile fields that trigger a prune, bandit ttl ms, bandit items kept},
# 16 type checks [key, type, ...], 17 1: a WAIT follows (the script always writes).
#
# All or nothing: everything that could make a write fail on the data (a key of another type, a counter that
# would overflow) is checked before the first write; the event ids and watermarks are written last, so even
# an unforeseen failure half-way leaves no event marked applied without its effects.
_APPLY_HEAD = """
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
"""

# the checks, then the writes, of a plan row (p): shared by the single-node script and the cluster's per-node
# scripts (which run the checks alone first: ``cluster_store._CHECK``)
_APPLY_CHECKS = """
-- checks: nothing is written before all pass
local tc = p[16]
for i = 1, #tc, 2 do
  local t = redis.call('TYPE', tc[i])['ok']
  if t ~= 'none' and t ~= tc[i + 1] then
    return redis.error_reply('STRATA_WRONGTYPE ' .. tc[i] .. ' holds a ' .. t .. ', the batch writes a ' .. tc[i + 1])
  end
end
local profiles, bandits, b = p[13], p[14], p[15]
local mday = {}
for i, k in ipairs(profiles) do
  local r = redis.pcall('HGET', k, 'mday')
  if type(r) == 'table' and r['err'] then
    return redis.error_reply('STRATA_WRONGTYPE ' .. k .. ': ' .. r['err'])
  end
  mday[i] = tonumber(r)
end
for _, k in ipairs(bandits) do
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'none' and t ~= 'hash' then
    return redis.error_reply('STRATA_WRONGTYPE ' .. k .. ' holds a ' .. t .. ', the batch writes a hash')
  end
end
local bi = p[12]
for i = 1, #bi, 3 do
  local c = tonumber(redis.call('HGET', bi[i], bi[i + 1]) or '0')
  if c == nil or c + bi[i + 2] > 9.2e18 then
    return redis.error_reply('STRATA_OVERFLOW ' .. bi[i] .. ' ' .. bi[i + 1] .. ' would exceed int64')
  end
end
"""

_APPLY_WRITES = """-- writes
for _, op in ipairs(p[5]) do redis.call(unpack(op)) end
local inc = p[6]
for i = 1, #inc, 3 do redis.call('HINCRBY', inc[i], inc[i + 1], inc[i + 2]) end
for i = 1, #bi, 3 do redis.call('HINCRBY', bi[i], bi[i + 1], bi[i + 2]) end
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
-- bounded state: at a profile's first write of a day its affinities decay, the strongest b[3] per map are kept,
-- per-day counters older than b[4] days go (and whenever it holds more than b[6] fields); the key expires b[5]
-- ms after the end of its last day
local function hdel(k, names)
  for lo = 1, #names, 1000 do redis.call('HDEL', k, unpack(names, lo, math.min(lo + 999, #names))) end
end
local today = b[1]
for i, k in ipairs(profiles) do
  local md = mday[i]
  if redis.call('HLEN', k) > b[6] or (md and md < today) then
    local flat = redis.call('HGETALL', k)
    local f = 1
    if md and md < today then f = 0.5 ^ ((today - md) / b[2]) end
    local maps, dels, sets = {cat = {}, brand = {}}, {}, {}
    for j = 1, #flat, 2 do
      local name = flat[j]
      local kind = string.match(name, '^(%a+):')
      if kind == 'cat' or kind == 'brand' then
        local x = tonumber(flat[j + 1]) or 0
        if f < 1 then
          x = math.floor(x * f)
          if x > 0 then sets[#sets + 1] = name; sets[#sets + 1] = string.format('%d', x) end
        end
        if x > 0 then table.insert(maps[kind], {name, x}) else dels[#dels + 1] = name end
      elseif kind == 'v' or kind == 'p' then
        local d = tonumber(string.sub(name, 3))
        if d and d < today - b[4] then dels[#dels + 1] = name end
      end
    end
    for _, list in pairs(maps) do
      if #list > b[3] then
        table.sort(list, function(x, y) if x[2] ~= y[2] then return x[2] > y[2] end return x[1] < y[1] end)
        for j = b[3] + 1, #list do dels[#dels + 1] = list[j][1] end
      end
    end
    for lo = 1, #sets, 1000 do redis.call('HSET', k, unpack(sets, lo, math.min(lo + 999, #sets))) end
    hdel(k, dels)
  end
  if md ~= today then      -- its first write of the day: it expires b[5] ms after the end of this day
    redis.call('HSET', k, 'mday', today)
    redis.call('PEXPIREAT', k, (today + 1) * 86400000 + b[5])
  end
end
-- a slot's counts expire b[7] ms after its last write; past 1.1 x b[8] items (3 fields each) the least shown
-- are dropped
for _, k in ipairs(bandits) do
  redis.call('PEXPIRE', k, b[7])
  if redis.call('HLEN', k) > 3.3 * b[8] then
    local flat = redis.call('HGETALL', k)
    local shown = {}
    for j = 1, #flat, 2 do
      local item = string.sub(flat[j], 3)
      if shown[item] == nil then shown[item] = 0 end
      if string.sub(flat[j], 1, 2) == 'n:' then shown[item] = tonumber(flat[j + 1]) or 0 end
    end
    local list = {}
    for item, n in pairs(shown) do list[#list + 1] = {item, n} end
    table.sort(list, function(x, y) if x[2] ~= y[2] then return x[2] > y[2] end return x[1] < y[1] end)
    local dels = {}
    for j = b[8] + 1, #list do local i = list[j][1]; dels[#dels + 1] = 'n:' .. i; dels[#dels + 1] = 'c:' .. i; dels[#dels + 1] = 'e:' .. i end
    hdel(k, dels)
  end
end
"""

_APPLY_TAIL = """
-- last: the batch's event ids and watermarks (it is applied), then the invalidation
for lo = 1, #members, 4000 do
  redis.call('SADD', cur_bucket, unpack(members, lo, math.min(lo + 3999, #members)))
end
if #members > 0 then redis.call('PEXPIREAT', cur_bucket, p[4]) end
local nw = p[11]
for i = 1, #nw, 2 do redis.call('HSET', KEYS[1], nw[i], nw[i + 1]) end
if p[10] ~= '' then redis.call('PUBLISH', KEYS[2], p[10]) end
if p[17] == 1 and #nw == 0 then redis.call('INCR', KEYS[3]) end     -- a write for WAIT to wait for
return 1
"""
_APPLY_BODY = _APPLY_CHECKS + _APPLY_WRITES
_APPLY = _APPLY_HEAD + _APPLY_BODY + _APPLY_TAIL


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)     # the server's cmsgpack reads str/raw, not bin


@dataclass(frozen=True, slots=True)
class Bounds:
    """How the write script keeps state bounded (``StreamingSettings``: profile_*, bandit_*)."""

    half_life_days: float = 30.0
    max_affinities: int = 64
    keep_days: int = 31
    profile_ttl_ms: int = 90 * 86_400_000
    horizon_days: int = 7
    bandit_ttl_ms: int = 30 * 86_400_000
    bandit_max_items: int = 20_000

    @classmethod
    def of(cls, cfg) -> Bounds:
        return cls(cfg.profile_half_life_days, cfg.profile_max_affinities, cfg.profile_keep_days,
                   int(cfg.profile_ttl_s * 1000), int(cfg.ts_horizon_s // 86400) + 1, int(cfg.bandit_ttl_s * 1000),
                   cfg.bandit_max_items)

    def row(self, now_ms: int) -> list:
        # a profile holds at most: 2 maps x max_affinities, per-day views/purchases (kept days + the days an event
        # time may lie behind or ahead), a dozen fixed fields; past that it is pruned at once
        prune_at = 2 * self.max_affinities + 2 * (self.keep_days + self.horizon_days + 2) + 16
        return [now_ms // 86_400_000, self.half_life_days, self.max_affinities, self.keep_days, self.profile_ttl_ms,
                prune_at, self.bandit_ttl_ms, self.bandit_max_items]


class ReplicationShortfall(RedisConnectionError):
    """Fewer replicas than ``streaming.wait_replicas`` acknowledged a write in time (retriable: redo)."""


def check_acks(acked: object, wanted: int) -> None:
    if wanted and int(acked) < wanted:          # type: ignore[call-overload]
        raise ReplicationShortfall(f"WAIT: {acked} replica(s) acknowledged, {wanted} wanted")


class StreamStore:
    def __init__(self, url: str, timeout_s: float = 5.0, dedup_ttl_s: float = 3600.0,
                 bounds: Bounds | None = None, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.r = connect_required(url, timeout_s, field="streaming.store")
        self.dedup_ms = max(int(dedup_ttl_s * 1000), 1)
        self.bounds = bounds or Bounds()
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._setup()

    def _setup(self) -> None:
        self._read = self.r.register_script(_READ)
        self._apply = self.r.register_script(_APPLY)

    async def read(self, reads: StoreReads, now_ms: int | None = None) -> Snapshot:
        """The snapshot a plan is computed from; event ids are checked in the dedup bucket of ``now_ms``."""
        bucket = (now_ms if now_ms is not None else int(time.time() * 1000)) // self.dedup_ms
        query = read_query(reads, bucket)
        raw = await self._read(keys=[K.WATERMARK_KEY], args=[_pack(query)])
        return parse_snapshot(query, raw, bucket)

    async def write(self, plan: Plan) -> bool:
        """Apply the plan atomically; False when the snapshot it was computed from is stale."""
        return await (await self.send_write(plan))()

    async def send_write(self, plan: Plan) -> Callable[[], Coroutine[Any, Any, bool]]:
        """Send the plan's write script now (the bytes are with the socket when this returns) and give back
        the coroutine function that waits for its answer, so the caller can plan the next batch meanwhile."""
        wait = self.wait_replicas
        blob = write_blob(plan, self.dedup_ms, self.bounds, wait=wait > 0)
        keys = [K.WATERMARK_KEY, K.INVALIDATION_CHANNEL, K.WRITES_KEY]
        cmds = [("EVALSHA", self._apply.sha, len(keys), *keys, blob)]
        if wait:      # WAIT counts this connection's writes: it must follow the script on the same connection
            cmds.append(("WAIT", wait, self.wait_timeout_ms))
        pool = self.r.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(conn.pack_commands(cmds))
        except BaseException:
            await conn.disconnect()
            await pool.release(conn)
            raise

        async def answer() -> bool:
            try:
                try:
                    res = await conn.read_response()
                except NoScriptError:           # first use on this server: load the script and run it
                    if wait:
                        await conn.read_response()      # the WAIT after it
                    await conn.send_command("SCRIPT", "LOAD", _APPLY)
                    await conn.read_response()
                    await conn.send_packed_command(conn.pack_commands(cmds))
                    res = await conn.read_response()
                if wait:
                    check_acks(await conn.read_response(), wait)
                return bool(res)
            except BaseException:
                await conn.disconnect()         # an unread answer must not reach the next command
                raise
            finally:
                await pool.release(conn)

        return answer

    async def watermarks(self, wm_fields: list[str]) -> list[int]:
        """The partitions' watermarks (-1: none), as written with the effects (the exact resume points)."""
        return [int(v) if v is not None else -1 for v in await self.r.hmget(K.WATERMARK_KEY, wm_fields)]

    async def close(self) -> None:
        await self.r.aclose()


def read_query(reads: StoreReads, bucket: int) -> list:
    """The read script's argument (before packing): what the plan depends on."""
    return [list(reads.wm_fields), list(reads.seen_members), list(reads.session_keys), list(reads.impression_keys),
            list(reads.pending_keys), K.seen_bucket_key(bucket), K.seen_bucket_key(bucket - 1),
            list(reads.erased_keys)]


def parse_snapshot(query: list, raw: bytes, bucket: int) -> Snapshot:
    """The read script's answer to ``query`` -> Snapshot."""
    return snapshot_of(query, msgpack.unpackb(raw, raw=True), bucket)


def snapshot_of(query: list, parts: list, bucket: int) -> Snapshot:
    """The read's answers (watermarks, seen flags, sessions, impressions, pending clicks, tombstones; in
    ``query``'s order)."""
    wm_fields, seen, sessions, imps, pend = query[:5]
    wm_raw, seen_raw, ses_raw, imp_raw, pend_raw, erased_raw = parts
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
    erased = query[7] if len(query) > 7 else []
    snap.erased = {k: int(v) for k, v in zip(erased, erased_raw, strict=False) if v}
    return snap


_GLOBAL_TYPES = [K.CART_DEADLINES_KEY, "zset", K.TRIGGER_OUTBOX_KEY, "list", K.WATERMARK_KEY, "hash"]
_OP_TYPES = {"ZADD": "zset", "SADD": "set"}


def write_blob(plan: Plan, dedup_ms: int, bounds: Bounds | None = None, wait: bool = False) -> bytes:
    """The write script's argument for ``plan`` (see ``_APPLY`` for the layout)."""
    return _pack(write_row(plan, dedup_ms, bounds, wait))


def write_row(plan: Plan, dedup_ms: int, bounds: Bounds | None = None, wait: bool = False) -> list:
    """``write_blob`` before packing."""
    b = plan.seen_bucket
    inc = [x for (k, f), n in plan.incr.items() if n for x in (k, f, n)]
    bounded: dict[tuple[str, str], int] = {}
    for k, f, n in plan.bounded:
        bounded[(k, f)] = bounded.get((k, f), 0) + n
    # keys the plan writes that its read did not already check the type of (sessions, impressions and the
    # pending clicks of impressions are read first: a key of another type fails the read)
    checks = [K.seen_bucket_key(b), "set", K.seen_bucket_key(b - 1), "set", *_GLOBAL_TYPES]
    checks += [x for k, t in dict.fromkeys((op[1], _OP_TYPES[op[0]]) for op in plan.ops if op[0] in _OP_TYPES)
               for x in (k, t)]
    lt = [x for k, v in plan.lt.items() for x in (k, "lt", v.shape[0], v.astype("<f8").tobytes())]
    ss = [x for w in plan.session_writes
          for x in (w.key, encode_state(w.acc, w.ref_ms, w.events, w.ttl_at), w.vec or "", w.recent, w.expire_at)]
    msg = msgpack.packb([list(s) for s in plan.sessions], use_bin_type=True) if plan.sessions else ""
    return [[x for f, v in plan.wm_expected.items() for x in (f, v)], plan.seen_new,
            [K.seen_bucket_key(b), K.seen_bucket_key(b - 1)], (b + 2) * dedup_ms, plan.ops, inc, lt,
            ss, plan.updated_ms, msg, [x for f, v in plan.wm_new.items() for x in (f, v)],
            [x for (k, f), n in bounded.items() for x in (k, f, n)], plan.checked, list(plan.bandits),
            (bounds or Bounds()).row(plan.updated_ms), checks, 1 if wait else 0]


def _impression(raw: dict[bytes, bytes]) -> Impression | None:
    if not raw or b"slot" not in raw:
        return None
    items = raw[b"items"].decode().split(K.FIELD_SEP) if raw.get(b"items") else []
    clicked = {k[8:].decode() for k in raw if k.startswith(b"clicked:")}
    return Impression(raw[b"slot"].decode(), int(raw[b"ts"]), items, clicked)

