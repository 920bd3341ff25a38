"""A user's data at the streaming service: what is held (``export``) and its erasure (``erase``), for
``GET /v1/users/{id}/data`` and ``DELETE /v1/users/{id}`` (scope ``admin``, the tenant from the key).

Erasure, in order:
1. a tombstone ``strata:{tenant}:erased:<sha256(user)>`` = erasure time, so the processor drops that user's events
   with an earlier time that arrive later (a batch in flight, a client retry, a log replay);
2. the user's sessions (the processor's per-user index), their session hashes (vectors, recent items), the profile
   (affinities, long-term vector, counters, consent), the purchases, the cart deadlines and the queued trigger
   messages that name the user;
3. invalidations: each session on the processor's channel (edges drop cached vectors and answers), the user on
   ``ERASURE_CHANNEL`` (the origin drops its cached profile);
4. after ``erasure_grace_s``, steps 2-3 again: a processor batch planned before the tombstone may have written
   after the first pass;
5. an audit record (``strata:{tenant}:audit`` stream: time, action, the user's hash, the key) and a log line; the
   export is audited the same way.

Store state that names no user is left as it is: bandit counts (per item and slot), impressions and pending clicks
(keyed by a signed impression id, holding slot, time and items, expiring after the join window), the dedup sets
(event ids, expiring after ``dedup_ttl_s``). The log itself is erased by retention (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import msgpack
import orjson

from strata.shared import keys as K
from strata.shared.online_store.client import connect
from strata.shared.online_store.codecs import decode_vector

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.typing import EncodableT, FieldT

logger = logging.getLogger(__name__)
AUDIT_MAXLEN = 100_000


def _text(v: bytes | str) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class UserData:
    def __init__(self, url: str, timeout_s: float = 2.0, grace_s: float = 2.0,
                 tombstone_ttl_s: float = 30 * 86400.0) -> None:
        self.r = connect(url, timeout_s, field="streaming.store")
        self.grace_s = grace_s
        self.tombstone_ms = int(tombstone_ttl_s * 1000)

    @property
    def configured(self) -> bool:
        return self.r is not None

    def _store(self) -> aioredis.Redis:
        r = self.r
        assert r is not None        # the routes refuse every call without a store (users_routes: ready)
        return cast("aioredis.Redis", r)    # a RedisCluster (cluster URL) answers the same commands

    async def close(self) -> None:
        if self.r is not None:
            await self.r.aclose()

    # -- export -------------------------------------------------------------------------------------------
    async def export(self, tenant: str, user_id: str, who: str | None = None) -> dict:
        r = self._store()
        sessions = sorted(_text(s) for s in await r.smembers(K.user_sessions_key(tenant, user_id)))
        async with r.pipeline(transaction=False) as pipe:
            pipe.hgetall(K.profile_key(tenant, user_id))
            pipe.zrevrange(K.purchases_key(tenant, user_id), 0, -1, withscores=True)
            pipe.get(K.erased_key(tenant, user_id))
            for s in sessions:
                pipe.hgetall(K.session_key(tenant, s))
            got = await pipe.execute()
        profile, purchases, erased, session_hashes = got[0], got[1], got[2], got[3:]
        out: dict[str, Any] = {"tenant": tenant, "user_id": user_id,
               "erased_at": int(erased) if erased is not None else None,
               "profile": _profile(profile),
               "purchases": [{"item_id": _text(i), "last_ts": int(ts)} for i, ts in purchases],
               "sessions": [_session(s, h) for s, h in zip(sessions, session_hashes, strict=True) if h]}
        await self._audit(tenant, "export", user_id, who, {"sessions": len(out["sessions"])})
        return out

    # -- erasure ------------------------------------------------------------------------------------------
    async def erase(self, tenant: str, user_id: str, who: str | None = None) -> dict:
        now = int(time.time() * 1000)
        await self._store().set(K.erased_key(tenant, user_id), now, px=self.tombstone_ms)
        first = await self._delete(tenant, user_id)
        if self.grace_s > 0:
            await asyncio.sleep(self.grace_s)
        second = await self._delete(tenant, user_id)
        result = {"tenant": tenant, "erased_at": now, "sessions": len(first["sessions"] | second["sessions"]),
                  "keys_deleted": first["keys"] + second["keys"], "triggers_dropped": first["triggers"] +
                  second["triggers"], "late_writes_erased": second["keys"]}
        await self._audit(tenant, "erase", user_id, who, result)
        return result

    async def _delete(self, tenant: str, user_id: str) -> dict:
        r = self._store()
        index = K.user_sessions_key(tenant, user_id)
        sessions = {_text(s) for s in await r.smembers(index)}
        keys = [K.session_key(tenant, s) for s in sorted(sessions)]
        keys += [K.profile_key(tenant, user_id), K.purchases_key(tenant, user_id), index]
        deleted = 0
        for key in keys:                        # one key per call: the keys live on different cluster slots
            deleted += await r.delete(key)
        members = [orjson.dumps([tenant, s, user_id]).decode() for s in sorted(sessions)]
        if members:
            await r.zrem(K.CART_DEADLINES_KEY, *members)
        triggers = await self._drop_triggers(tenant, user_id, set(members))
        if sessions:
            await r.publish(K.INVALIDATION_CHANNEL, msgpack.packb([[tenant, s] for s in sorted(sessions)]))
        await r.publish(K.ERASURE_CHANNEL, msgpack.packb([tenant, user_id]))
        return {"sessions": sessions, "keys": deleted, "triggers": triggers}

    async def _drop_triggers(self, tenant: str, user_id: str, cart_members: set[str]) -> int:
        """Queued trigger messages naming the user become empty entries (the relay skips those; the list keeps
        its length, so the relay's trim after a publish stays right)."""
        r = self._store()
        entries = await r.lrange(K.TRIGGER_OUTBOX_KEY, 0, -1)
        dropped = 0
        for i, raw in enumerate(entries):
            if not raw:
                continue
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(msg, dict):
                continue
            mine = (msg.get("tenant") == tenant and msg.get("user_id") == user_id) or msg.get("member") in cart_members
            if mine:
                try:
                    # redis-py's stubs say str; it takes bytes (and the entries are bytes)
                    await r.lset(K.TRIGGER_OUTBOX_KEY, i, b"")     # type: ignore[arg-type]
                    dropped += 1
                except Exception:        # the relay trimmed past it meanwhile: it is gone anyway
                    break
        return dropped

    async def _audit(self, tenant: str, action: str, user_id: str, who: str | None, detail: dict) -> None:
        uh = K.user_hash(tenant, user_id)
        record: dict[FieldT, EncodableT] = {"ts": int(time.time() * 1000), "action": action, "user": uh,
                                            "key_id": who or "", "detail": orjson.dumps(detail).decode()}
        await self._store().xadd(K.audit_key(tenant), record, maxlen=AUDIT_MAXLEN, approximate=True)
        logger.warning("user data %s", action, extra={"tenant": tenant, "user_hash": uh, "key_id": who,
                                                       **{k: v for k, v in detail.items() if k != "tenant"}})


def _profile(raw: dict) -> dict:
    out: dict = {}
    for k, v in raw.items():
        key = _text(k)
        if key == "lt":
            import numpy as np

            vec = np.frombuffer(v, dtype=np.float64) if len(v) % 8 == 0 else np.zeros(0)
            out[key] = [round(float(x), 6) for x in vec]
        else:
            out[key] = _text(v)
    return out


def _session(session_id: str, raw: dict) -> dict:
    out: dict = {"session_id": session_id}
    for k, v in raw.items():
        key = _text(k)
        if key == "vec":
            vec = decode_vector(v)
            out[key] = None if vec is None else [round(float(x), 6) for x in vec]
        elif key == "acc":
            continue                            # the vector's unnormalised accumulator: the vector says it
        elif key == "recent":
            out[key] = [x for x in _text(v).split(K.FIELD_SEP) if x]
        else:
            out[key] = _text(v)
    return out
