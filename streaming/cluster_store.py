"""The processor's store on a Redis/Valkey Cluster: the same plan as ``streaming.store``, written through a
journal because one script cannot span nodes.

A batch's plan touches many slots (one per session, user, bandit slot, impression). Written in four steps:
0. ``_CHECK`` on every node touched, in parallel: the single-node script's checks (key types, counters that would
   overflow). A refusal fails the batch with nothing written, so the processor isolates and dead-letters the
   record as on one node; refused after step 1, the entry would stay pending and stop its partitions for good.
1. ``_BEGIN`` on the ``{stream}`` slot: the snapshot's watermarks and event ids are checked (as the single-node
   script does), no earlier journal of these partitions is still pending, then the plan is stored as journal
   entry ``jid``, the partitions are marked pending, and the watermarks and event ids are written. From here
   the batch counts as applied: a crash leaves the entry, which whoever reads these partitions next completes.
2. ``_GROUP`` once per node, in parallel: the plan's writes for that node's keys (``allow-cross-slot-keys``:
   one atomic script per node, not per slot), each slot touched marked done with ``jid`` (``keys.done_key``).
   A slot already marked (a crash after its node applied) is skipped: every write lands exactly once.
3. ``_END`` on ``{stream}``: the entry and its pending marks are removed, the invalidation published.

With ``wait_replicas`` n > 0 every step is followed by ``WAIT n timeout`` on its connection, and the next
step waits for it: a failover can lose only writes not yet acknowledged, and those belong to a batch whose
offsets are not committed and whose journal entry is still there (or whose ``_BEGIN`` never survived). Redone,
the batch finds the entry and completes it, or is planned again from scratch.

Reads are one script per node (``_READ_NODE``). Slot moves (resharding) during a crash recovery are not
handled: a node group whose slots are partly marked done fails with ``STRATA_PARTIAL``. Neither is another client
changing a key's type between steps 0 and 2: that group then fails until the key is fixed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from hashlib import sha1
from typing import Any

import msgpack
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError, ResponseError

from strata.shared import keys as K
from strata.shared.online_store.client import connect_required, is_cluster
from strata.streaming.effects import Plan, Snapshot, StoreReads
from strata.streaming.store import (
    _APPLY_BODY,
    _APPLY_CHECKS,
    _READ_BODY,
    Bounds,
    StreamStore,
    _pack,
    check_acks,
    read_query,
    snapshot_of,
    write_row,
)

_CROSS = "#!lua flags=allow-cross-slot-keys\n"
DONE_TTL_MS = 7 * 86_400_000         # a slot's done marks outlive any journal entry still pending

_READ_NODE = _CROSS + """
local q = cmsgpack.unpack(ARGV[1])
local out = {{}, {}, {}, {}, {}, {}, {}}
if #q[1] > 0 then
  out[1] = redis.call('HMGET', q[9], unpack(q[1]))
  out[7] = redis.call('HMGET', q[10], unpack(q[1]))
end""" + _READ_BODY

# ARGV[1]: the plan row (``store.write_row``), ARGV[2]: the journal entry, ARGV[3...]: the partition fields the
# entry is pending on (the watermarks' fields, or a replaced log's batch's partitions: it compares no watermark).
# KEYS: watermarks, pending, journal, journal seq (all ``{stream}``). Returns the journal id, 0 when the snapshot
# is stale.
_BEGIN = """
local p = cmsgpack.unpack(ARGV[1])
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return 0 end
end
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
for _, key in ipairs({cur_bucket, prev_bucket}) do
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= 'set' then
    return redis.error_reply('STRATA_WRONGTYPE ' .. key .. ' holds a ' .. t .. ', the batch writes a set')
  end
end
for lo = 1, #members, 4000 do
  local hi = math.min(lo + 3999, #members)
  for _, key in ipairs({cur_bucket, prev_bucket}) do
    for _, hit in ipairs(redis.call('SMISMEMBER', key, unpack(members, lo, hi))) do
      if hit == 1 then return 0 end
    end
  end
end
local jid = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], jid, ARGV[2])
for i = 3, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], jid) end
for lo = 1, #members, 4000 do
  redis.call('SADD', cur_bucket, unpack(members, lo, math.min(lo + 3999, #members)))
end
if #members > 0 then redis.call('PEXPIREAT', cur_bucket, p[4]) end
local nw = p[11]
for i = 1, #nw, 2 do redis.call('HSET', KEYS[1], nw[i], nw[i + 1]) end
return jid
"""

# p: the plan row restricted to one node's keys, + 17 journal id, 18 partition fields, 19 done keys of the
# node's slots touched, 20 their ttl (ms). Returns 1 applied, 2 already applied.
_GROUP = _CROSS + """
local p = cmsgpack.unpack(ARGV[1])
local jid, fields, marks = p[17], p[18], p[19]
local done = 0
for _, m in ipairs(marks) do
  if tonumber(redis.call('HGET', m, fields[1]) or '-1') >= jid then done = done + 1 end
end
if done > 0 then
  if done == #marks then return 2 end
  return redis.error_reply('STRATA_PARTIAL journal ' .. jid .. ': ' .. done .. ' of ' .. #marks .. ' slots applied')
end
""" + _APPLY_BODY + """
for _, m in ipairs(marks) do
  for _, f in ipairs(fields) do redis.call('HSET', m, f, jid) end
  redis.call('PEXPIRE', m, p[20])
end
return 1
"""

# p: as ``_GROUP``'s. The group's checks alone, on every node before ``_BEGIN``: a key of another type or a
# counter that would overflow refuses the batch while nothing is written (after ``_BEGIN`` the entry must be
# completed, and a refusal would leave it pending for good). Returns 1.
_CHECK = _CROSS + """
local p = cmsgpack.unpack(ARGV[1])
""" + _APPLY_CHECKS + """
return 1
"""

# ARGV: journal id, invalidation message ("" none), the partition fields. KEYS: pending, journal.
_END = """
redis.call('HDEL', KEYS[2], ARGV[1])
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
if ARGV[2] ~= '' then redis.call('PUBLISH', 'CHANNEL', ARGV[2]) end
return 1
""".replace("CHANNEL", K.INVALIDATION_CHANNEL)

_SHA = {s: sha1(s.encode()).hexdigest() for s in (_READ_NODE, _BEGIN, _CHECK, _GROUP, _END)}

# row fields (0-based; ``_APPLY``'s p[i + 1]) holding keys, and how many list items each entry takes (the key
# first): ops, HINCRBYs, long-term adds, sessions, bounded HINCRBYs, profiles checked, bandits, type checks
_KEYED = {4: None, 5: 3, 6: 4, 7: 5, 11: 3, 12: 1, 13: 1, 15: 2}
_WRITES = (4, 5, 6, 7, 11, 12, 13)


def split_row(row: list, node_of: Callable[[bytes | str], str]) -> dict[str, tuple[list, set[int]]]:
    """The plan row's writes by node: node name -> (the row restricted to it, the slots it touches)."""
    groups: dict[str, tuple[list, set[int]]] = {}

    def group(key) -> tuple[list, set[int]]:
        name = node_of(key)
        g = groups.get(name)
        if g is None:
            g = groups[name] = ([[], [], [], 0, [], [], [], [], row[8], "", [], [], [], [], row[14], [], 0], set())
        g[1].add(key_slot(key.encode() if isinstance(key, str) else key))
        return g

    for i, width in _KEYED.items():
        items = row[i]
        if width is None:              # ops: one tuple per write, the key second
            for op in items:
                group(op[1])[0][i].append(list(op))
        else:
            for lo in range(0, len(items), width):
                group(items[lo])[0][i].extend(items[lo:lo + width])
    # only the keys actually written get type checks that matter; a group of checks alone writes nothing
    return {n: g for n, g in groups.items() if any(g[0][i] for i in _WRITES)}


class ClusterStreamStore:
    """``StreamStore``'s calls (``read``, ``write``, ``send_write``, ``watermarks``, ``close``, ``r``) on a cluster."""

    def __init__(self, url: str, timeout_s: float = 5.0, dedup_ttl_s: float = 3600.0, bounds: Bounds | None = None,
                 wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.r = connect_required(url, timeout_s, field="streaming.store")
        self.dedup_ms = max(int(dedup_ttl_s * 1000), 1)
        self.bounds = bounds or Bounds()
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._stale = False            # a call failed: refresh the slot map before the next one
        self.recovered = 0             # journal entries completed for a crashed or failed writer

    # -- topology and one-connection calls ------------------------------------------------------------------
    async def _nodes(self):
        if self._stale:
            self._stale = False
            await self.r.nodes_manager.initialize()
        elif not self.r.nodes_manager.slots_cache:
            await self.r.initialize()
        return self.r.nodes_manager

    def _node(self, nm, key):
        return nm.get_node_from_slot(key_slot(key.encode() if isinstance(key, str) else key))

    async def _call(self, node, script: str, keys: list, args: list, wait: bool) -> object:
        """Run ``script`` on ``node`` (loading it on first use), then WAIT on the same connection if ``wait``."""
        cmds = [("EVALSHA", _SHA[script], len(keys), *keys, *args)]
        if wait and self.wait_replicas:
            cmds.append(("WAIT", self.wait_replicas, self.wait_timeout_ms))
        conn = node.acquire_connection()
        try:
            for attempt in (0, 1):
                await conn.send_packed_command(conn.pack_commands(cmds))
                replies: list = []
                for _ in cmds:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
                if isinstance(replies[0], NoScriptError) and attempt == 0:
                    await conn.send_command("SCRIPT", "LOAD", script)
                    await conn.read_response()
                    continue
                break
            if isinstance(replies[0], Exception):
                raise replies[0]
            if len(replies) > 1:
                if isinstance(replies[1], Exception):
                    raise replies[1]
                check_acks(replies[1], self.wait_replicas)
            return replies[0]
        except BaseException as exc:
            if not isinstance(exc, ResponseError) or str(exc).split(" ", 1)[0] in ("MOVED", "ASK", "CLUSTERDOWN",
                                                                                   "TRYAGAIN"):
                self._stale = True
            if not isinstance(exc, ResponseError):
                await conn.disconnect()
            raise
        finally:
            node.release(conn)

    async def _guard(self, coro: Awaitable):
        try:
            return await coro
        except (RedisError, OSError, TimeoutError):
            self._stale = True
            raise

    # -- the StreamStore calls -----------------------------------------------------------------------------
    async def read(self, reads: StoreReads, now_ms: int | None = None) -> Snapshot:
        """The snapshot a plan is computed from, after completing any journal entry pending on its partitions."""
        bucket = (now_ms if now_ms is not None else int(time.time() * 1000)) // self.dedup_ms
        query = read_query(reads, bucket)
        for _ in range(3):
            parts, pending = await self._guard(self._read_once(query))
            if not pending:
                return snapshot_of(query, parts, bucket)
            await self._guard(self._recover(sorted(pending)))
        raise RedisError("journal entries still pending after recovery")

    async def _read_once(self, query: list) -> tuple[list, set[int]]:
        nm = await self._nodes()
        wm_fields, members, sessions, imps, pend, cur, prev, erased = query
        home = self._node(nm, K.WATERMARK_KEY)
        asks: dict[str, list] = {}
        where: dict[str, object] = {home.name: home}

        def ask(node) -> list:
            q = asks.get(node.name)
            if q is None:
                q = asks[node.name] = [[], [], [], [], [], cur, prev, [], K.WATERMARK_KEY, K.PENDING_KEY]
                where[node.name] = node
            return q

        q = ask(home)
        q[0], q[1] = list(wm_fields), list(members)
        cols = ((2, sessions), (3, imps), (4, pend), (7, erased))
        for col, ks in cols:
            for k in ks:
                ask(self._node(nm, k))[col].append(k)
        names = list(asks)
        answers = await asyncio.gather(*(self._call(where[n], _READ_NODE, [], [_pack(asks[n])], False)
                                         for n in names))
        by_key: dict[int, dict] = {col: {} for col, _ in cols}
        parts: list = [[], [], [], [], [], []]
        pending: set[int] = set()
        for n, raw in zip(names, answers, strict=True):
            out = msgpack.unpackb(raw, raw=True)
            if n == home.name:
                parts[0], parts[1] = out[0], out[1]
                pending = {int(v) for v in out[6] if v}
            for col, _ in cols:          # answers: 2-4 at the same index, the tombstones (query 7) at 5
                by_key[col].update(zip(asks[n][col], out[col if col < 7 else 5], strict=True))
        for col, ks in cols:
            parts[col if col < 7 else 5] = [by_key[col][k] for k in ks]
        return parts, pending

    async def _recover(self, jids: list[int]) -> None:
        nm = await self._nodes()
        home = self._node(nm, K.WATERMARK_KEY)
        entries = await self.r.hmget(K.JOURNAL_KEY, [str(j) for j in jids])
        for jid, entry in zip(jids, entries, strict=True):
            if entry is None:          # completed meanwhile (its pending mark went with it, or is going)
                await self._call(home, _END, [K.PENDING_KEY, K.JOURNAL_KEY], [jid, ""], True)
                continue
            fields, row, msg = msgpack.unpackb(entry, raw=True)
            await self._apply_groups(jid, fields, row)
            await self._call(home, _END, [K.PENDING_KEY, K.JOURNAL_KEY], [jid, msg, *fields], True)
            self.recovered += 1

    async def _check_groups(self, row: list) -> None:
        """Every node's checks of the plan (``_CHECK``), in parallel; the first refusal is raised."""
        nm = await self._nodes()
        groups = split_row(row, lambda k: self._node(nm, k).name)
        calls = [self._call(nm.get_node(node_name=name), _CHECK, [], [_pack(sub)], False)
                 for name, (sub, _) in groups.items()]
        for res in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(res, BaseException):
                raise res

    async def _apply_groups(self, jid: int, fields: list, row: list) -> None:
        nm = await self._nodes()
        groups = split_row(row, lambda k: self._node(nm, k).name)
        calls = []
        for name, (sub, slots) in groups.items():
            sub[16:] = [jid, fields, [K.done_key(s) for s in sorted(slots)], DONE_TTL_MS]
            calls.append(self._call(nm.get_node(node_name=name), _GROUP, [], [_pack(sub)], True))
        for res in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(res, BaseException):
                raise res

    async def write(self, plan: Plan) -> bool:
        """Apply the plan exactly once across the nodes; False when the snapshot it was computed from is stale."""
        return await self._guard(self._write(plan))

    async def _write(self, plan: Plan) -> bool:
        nm = await self._nodes()
        home = self._node(nm, K.WATERMARK_KEY)
        row = write_row(plan, self.dedup_ms, self.bounds)
        # pending and done marks are kept per partition, also for a batch that compares no watermark
        fields = list(plan.wm_expected) or list(plan.partitions)
        if not fields:
            raise ValueError("a cluster write needs the partitions of its records")
        msg = row[9]
        entry_row = list(row)
        entry_row[1], entry_row[10] = [], []       # the journal keeps the writes, not the checks
        entry = msgpack.packb([fields, entry_row, msg], use_bin_type=False)
        await self._check_groups(entry_row)
        jid = await self._call(home, _BEGIN, [K.WATERMARK_KEY, K.PENDING_KEY, K.JOURNAL_KEY, K.JOURNAL_SEQ_KEY],
                               [_pack(row), entry, *fields], True)
        if not jid:
            return False
        assert isinstance(jid, int)         # the begin script returns the journal id (an integer reply)
        await self._apply_groups(jid, fields, entry_row)
        await self._call(home, _END, [K.PENDING_KEY, K.JOURNAL_KEY], [jid, msg, *fields], True)
        return True

    async def send_write(self, plan: Plan) -> Callable[[], Coroutine[Any, Any, bool]]:
        """The write, started now; the coroutine function gives its answer (as ``StreamStore.send_write``)."""
        task = asyncio.ensure_future(self.write(plan))

        async def answer() -> bool:
            return await task

        return answer

    async def watermarks(self, wm_fields: list[str]) -> list[int]:
        """The partitions' watermarks, after completing their pending journal entries (read at assignment: an
        entry left by a crash is finished even when no new record of its partitions arrives)."""
        if wm_fields:
            pending = {int(v) for v in await self._guard(self.r.hmget(K.PENDING_KEY, wm_fields)) if v}
            if pending:
                await self._guard(self._recover(sorted(pending)))
        return [int(v) if v is not None else -1 for v in await self.r.hmget(K.WATERMARK_KEY, wm_fields)]

    async def close(self) -> None:
        await self.r.aclose()


def open_stream_store(url: str, timeout_s: float = 5.0, dedup_ttl_s: float = 3600.0, bounds: Bounds | None = None,
                      wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> StreamStore | ClusterStreamStore:
    """The processor's store for ``url``: journaled per node on a cluster URL, one atomic script otherwise."""
    if is_cluster(url):
        return ClusterStreamStore(url, timeout_s, dedup_ttl_s, bounds, wait_replicas, wait_timeout_ms)
    return StreamStore(url, timeout_s, dedup_ttl_s, bounds, wait_replicas, wait_timeout_ms)
