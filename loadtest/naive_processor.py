"""The naive baseline processor of ``strata bench streaming``: the same effects on the session vector, the
profile's view counter and the dedup key, but one store round trip per command and per event (no
batching, no script), committing after each fetched batch. What a first, straightforward consumer does."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from strata.shared import keys as K
from strata.shared.contracts.api import parse_event
from strata.shared.contracts.event_records import decode_event
from strata.shared.ranking.session_update import (
    SessionRule,
    apply_event,
    decode_state,
    encode_state,
    session_vec,
)


async def run_naive(broker: str, topic: str, store_url: str, group: str, n_events: int, vector,
                    rule: SessionRule, timeout_s: float = 120.0) -> tuple[int, float]:
    """Consume ``n_events`` from the start of ``topic``; returns (events applied, seconds)."""

    r = aioredis.from_url(store_url)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await consumer.start()
    done = 0
    t0 = None
    deadline = time.monotonic() + timeout_s
    try:
        while done < n_events and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            if t0 is None and batches:
                t0 = time.perf_counter()
            for msgs in batches.values():
                for m in msgs:
                    ev = parse_event(decode_event(m.value))
                    done += 1
                    if not await r.set(K.seen_key(ev.tenant, ev.event_id), 1, nx=True, ex=86400):
                        continue
                    vec = vector(ev.item_id) if ev.item_id else None
                    if vec is not None:
                        skey = K.session_key(ev.tenant, ev.session_id)
                        old = decode_state(await r.hget(skey, "st"))
                        state = apply_event(old.state, vec, rule.weight(ev.type), ev.ts_ms, rule)
                        fields = {"st": encode_state(state.acc, state.ref_ms, old.events + 1, old.ttl_at),
                                  "updated_ms": int(time.time() * 1000)}
                        unit = session_vec(state)
                        if unit is not None:
                            fields["vec"] = unit.astype("<f4").tobytes()
                        await r.hset(skey, mapping=fields)
                    if ev.type == "view":
                        await r.hincrby(K.profile_key(ev.tenant, ev.user_id), f"v:{ev.ts_ms // 86_400_000}", 1)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await r.aclose()
    return done, (time.perf_counter() - t0) if t0 else float("nan")


def naive_events_per_s(*args, **kwargs) -> float:
    done, secs = asyncio.run(run_naive(*args, **kwargs))
    return done / secs if secs > 0 else 0.0
