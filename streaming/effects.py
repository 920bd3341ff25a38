"""What a batch of log records does to the store: a pure plan, computed from a snapshot of the store.

The processor reads a snapshot (``StoreReads``: applied-offset watermarks, seen event ids, session
states, impressions, pending clicks), computes the plan here, and writes it with one atomic script that
first checks the snapshot's watermarks and seen ids are unchanged (``streaming.store``). So a record is
applied at most once whatever crashes or rebalances happen (offsets at or below the partition's watermark
and event ids already seen are skipped), and at least once because offsets are committed only after the
write. Per session, events are applied in log order with ``shared.session_update.apply_event``: the
stored vector equals a replay of the session's distinct events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson

from shared import keys as K
from shared.config import StreamingSettings
from shared.contracts import Event
from shared.session_update import SessionAcc, apply_event, encode_acc, session_vec
from streaming.catalog import Catalog

DAY_MS = 86_400_000
VADD = "VADD"          # script op: add packed float64s to a hash field (the long-term profile vector)
AFFINITY = {"view": 1, "click": 1, "add_to_cart": 3, "purchase": 5}
PREFERENCE_AFFINITY = 10


@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    event: Event | None          # None: the record failed validation (``error`` says why)
    raw: bytes = b""
    error: tuple[str | None, str] | None = None     # (field, reason)

    @property
    def wm_field(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(slots=True)
class Impression:
    slot: str
    ts_ms: int
    items: list[str]
    clicked: set[str]


@dataclass(slots=True)
class Snapshot:
    watermarks: dict[str, int]                       # wm field -> last applied offset (-1: none)
    seen: set[str]                                   # seen keys that exist
    sessions: dict[str, tuple[SessionAcc | None, int]]   # session key -> (state, events applied)
    impressions: dict[str, Impression | None]
    pending: dict[str, set[str]]                     # pending-clicks key -> item ids


@dataclass(slots=True)
class StoreReads:
    """Which keys the plan depends on."""

    wm_fields: set[str] = field(default_factory=set)
    seen_keys: set[str] = field(default_factory=set)
    session_keys: set[str] = field(default_factory=set)
    impression_keys: set[str] = field(default_factory=set)
    pending_keys: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Plan:
    wm_expected: dict[str, int]
    wm_new: dict[str, int]
    seen_new: list[str]
    ops: list[tuple]
    applied: list[Event] = field(default_factory=list)
    duplicates: int = 0          # event id seen before (a client retry, or a replay after the dedup key)
    replayed: int = 0            # offset at or below the watermark (redelivery after a crash/rebalance)
    dead: list[Record] = field(default_factory=list)
    sessions: list[tuple[str, str]] = field(default_factory=list)    # (tenant, session) updated


def reads_for(records: list[Record]) -> StoreReads:
    r = StoreReads()
    for rec in records:
        r.wm_fields.add(rec.wm_field)
        ev = rec.event
        if ev is None:
            continue
        r.seen_keys.add(K.seen_key(ev.tenant, ev.event_id))
        if ev.item_id is not None:
            r.session_keys.add(K.session_key(ev.tenant, ev.session_id))
        if ev.type == "click" and ev.impression_id is not None:
            r.impression_keys.add(K.impression_key(ev.tenant, ev.impression_id))
        elif ev.type == "impression":
            r.pending_keys.add(K.pending_clicks_key(ev.tenant, ev.impression_id))
    return r


class Planner:
    def __init__(self, cfg: StreamingSettings, catalog: Catalog) -> None:
        self.cfg = cfg
        self.rule = cfg.session
        self.catalog = catalog
        self.join_ms = int(cfg.click_join_window_s * 1000)
        self.cart_ms = int(cfg.abandoned_cart_s * 1000)
        self.dedup_s = int(cfg.dedup_ttl_s)
        self.session_ttl_ms = int(cfg.session_ttl_s * 1000)

    def plan(self, records: list[Record], snap: Snapshot, now_ms: int) -> Plan:
        wm = dict(snap.watermarks)
        plan = Plan({f: snap.watermarks.get(f, -1) for f in {r.wm_field for r in records}}, {}, [], [])
        seen = set(snap.seen)
        sessions = dict(snap.sessions)
        touched: dict[str, tuple[str, str]] = {}
        imps = dict(snap.impressions)
        pending = {k: set(v) for k, v in snap.pending.items()}
        incr: dict[tuple[str, str], int] = {}
        lt: dict[str, np.ndarray] = {}
        ops = plan.ops
        for rec in records:
            if rec.offset <= wm.get(rec.wm_field, -1):
                plan.replayed += 1
                continue
            wm[rec.wm_field] = rec.offset
            plan.wm_new[rec.wm_field] = rec.offset
            ev = rec.event
            if ev is None:
                plan.dead.append(rec)
                continue
            sk = K.seen_key(ev.tenant, ev.event_id)
            if sk in seen:
                plan.duplicates += 1
                continue
            seen.add(sk)
            plan.seen_new.append(sk)
            ops.append(("SET", sk, "1", "EX", self.dedup_s))
            plan.applied.append(ev)
            self._apply(ev, sessions, touched, imps, pending, incr, lt, ops)
        for pkey, delta in lt.items():
            ops.append((VADD, pkey, "lt", delta.shape[0], delta.astype("<f8").tobytes()))
        for (key, fld), n in incr.items():
            if n:
                ops.append(("HINCRBY", key, fld, n))
        for skey, (tenant, sid) in touched.items():
            state, n = sessions[skey]
            vec = session_vec(state)
            fields = ["acc", encode_acc(state), "ref_ms", state.ref_ms, "events", n, "updated_ms", now_ms]
            if vec is not None:
                fields += ["vec", vec.astype("<f4").tobytes()]
            ops.append(("HSET", skey, *fields))
            ops.append(("PEXPIRE", skey, self.session_ttl_ms))
            ops.append(("PUBLISH", K.INVALIDATION_CHANNEL, f"{tenant}{K.FIELD_SEP}{sid}"))
            plan.sessions.append((tenant, sid))
        return plan

    def _apply(self, ev: Event, sessions: dict, touched: dict, imps: dict, pending: dict, incr: dict,
               lt: dict, ops: list) -> None:
        t = ev.type
        tenant = ev.tenant
        pkey = K.profile_key(tenant, ev.user_id)
        day = ev.ts_ms // DAY_MS
        if ev.consent:
            ops.append(("HSET", pkey, *[x for k, v in ev.consent.items() for x in (f"consent:{k}", int(v))]))
        if ev.item_id is not None:
            vec = self.catalog.vector(ev.item_id)
            w = self.rule.weight(t)
            if vec is not None and w != 0.0:
                skey = K.session_key(tenant, ev.session_id)
                state, n = sessions.get(skey, (None, 0))
                sessions[skey] = (apply_event(state, vec, w, ev.ts_ms, self.rule), n + 1)
                touched[skey] = (tenant, ev.session_id)
                acc = lt.get(pkey)
                if acc is None:
                    lt[pkey] = vec.astype(np.float64) * w
                else:
                    acc += vec * w
            aff = AFFINITY.get(t, 0)
            if aff:
                cat, brand = self.catalog.category(ev.item_id), self.catalog.brand(ev.item_id)
                if cat is not None:
                    _add(incr, pkey, f"cat:{cat}", aff)
                if brand is not None:
                    _add(incr, pkey, f"brand:{brand}", aff)
        if t == "view":
            _add(incr, pkey, f"v:{day}", 1)
        elif t == "purchase":
            _add(incr, pkey, f"p:{day}", 1)
            _add(incr, pkey, "orders", 1)
            _add(incr, pkey, "revenue_cents", round(ev.price * ev.quantity * 100))
            bkey = K.purchases_key(tenant, ev.user_id)
            ops.append(("ZADD", bkey, "GT", ev.ts_ms, ev.item_id))     # GT: a replayed older purchase keeps the newer
            ops.append(("ZREMRANGEBYRANK", bkey, 0, -(K.MAX_PURCHASES + 1)))
            ops.append(("ZREM", K.CART_DEADLINES_KEY, _cart_member(ev)))
            ops.append(("RPUSH", K.TRIGGER_OUTBOX_KEY, orjson.dumps({
                "trigger_id": f"post_purchase:{tenant}:{ev.event_id}", "type": "post_purchase",
                "tenant": tenant, "user_id": ev.user_id, "session_id": ev.session_id, "ts": ev.ts_ms,
                "item_id": ev.item_id, "quantity": ev.quantity, "price": ev.price})))
        elif t == "add_to_cart":
            ops.append(("ZADD", K.CART_DEADLINES_KEY, "GT", ev.ts_ms + self.cart_ms, _cart_member(ev)))
        elif t == "preference":       # the latest statement, as said (the origin searches with it)
            ops.append(("HSET", pkey, "stated", orjson.dumps({"categories": ev.categories or [],
                                                              "brands": ev.brands or []})))
            for c in ev.categories or ():
                _add(incr, pkey, f"cat:{c}", PREFERENCE_AFFINITY)
            for b in ev.brands or ():
                _add(incr, pkey, f"brand:{b}", PREFERENCE_AFFINITY)
        elif t == "impression":
            self._impression(ev, imps, pending, incr, ops)
        elif t == "click" and ev.impression_id is not None:
            self._click(ev, imps, pending, incr, ops)

    def _impression(self, ev: Event, imps: dict, pending: dict, incr: dict, ops: list) -> None:
        ikey = K.impression_key(ev.tenant, ev.impression_id)
        if imps.get(ikey) is not None:       # the same impression id logged twice: counted once
            return
        imp = imps[ikey] = Impression(ev.slot, ev.ts_ms, list(ev.items), set())
        bkey = K.bandit_key(ev.tenant, ev.slot)
        for item in dict.fromkeys(ev.items):
            _add(incr, bkey, K.imps_field(item), 1)
        ops.append(("HSET", ikey, "slot", ev.slot, "ts", ev.ts_ms, "items", K.FIELD_SEP.join(ev.items)))
        ops.append(("PEXPIRE", ikey, self.join_ms))
        pkey = K.pending_clicks_key(ev.tenant, ev.impression_id)
        waiting = pending.pop(pkey, set())
        if waiting:
            for item in sorted(waiting):
                self._count_click(ev.tenant, ikey, imp, item, incr, ops)
            ops.append(("DEL", pkey))

    def _click(self, ev: Event, imps: dict, pending: dict, incr: dict, ops: list) -> None:
        ikey = K.impression_key(ev.tenant, ev.impression_id)
        imp = imps.get(ikey)
        if imp is None:                      # the impression is not logged yet: wait for it (join window)
            pkey = K.pending_clicks_key(ev.tenant, ev.impression_id)
            pending.setdefault(pkey, set()).add(ev.item_id)
            ops.append(("SADD", pkey, ev.item_id))
            ops.append(("PEXPIRE", pkey, self.join_ms))
        elif ev.ts_ms - imp.ts_ms <= self.join_ms:
            self._count_click(ev.tenant, ikey, imp, ev.item_id, incr, ops)

    @staticmethod
    def _count_click(tenant: str, ikey: str, imp: Impression, item: str, incr: dict, ops: list) -> None:
        if item in imp.items and item not in imp.clicked:
            imp.clicked.add(item)
            _add(incr, K.bandit_key(tenant, imp.slot), K.clicks_field(item), 1)
            ops.append(("HSET", ikey, f"clicked:{item}", 1))


def _add(incr: dict, key: str, fld: str, n: int) -> None:
    incr[(key, fld)] = incr.get((key, fld), 0) + n


def _cart_member(ev: Event) -> str:
    return K.FIELD_SEP.join((ev.tenant, ev.session_id, ev.user_id))


def profile_summary(raw: dict[bytes, bytes], now_ms: int) -> dict:
    """A profile hash -> counters over 7/30 days, average order value, affinities, consent."""
    today = now_ms // DAY_MS
    out: dict = {"views_7d": 0, "views_30d": 0, "purchases_7d": 0, "purchases_30d": 0, "categories": {},
                 "brands": {}, "consent": {}}
    lt = None
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else k
        kind, _, rest = key.partition(":")
        if kind in ("v", "p") and rest.isdigit():
            age = today - int(rest)
            name = "views" if kind == "v" else "purchases"
            if 0 <= age < 7:
                out[f"{name}_7d"] += int(v)
            if 0 <= age < 30:
                out[f"{name}_30d"] += int(v)
        elif kind == "cat":
            out["categories"][rest] = int(v)
        elif kind == "brand":
            out["brands"][rest] = int(v)
        elif kind == "consent":
            out["consent"][rest] = bool(int(v))
        elif key == "lt":
            lt = np.frombuffer(v, dtype="<f8")
    orders = int(raw.get(b"orders", raw.get("orders", 0)) or 0)
    revenue = int(raw.get(b"revenue_cents", raw.get("revenue_cents", 0)) or 0)
    out["orders"] = orders
    out["avg_order_value"] = round(revenue / orders / 100, 2) if orders else 0.0
    norm = float(np.linalg.norm(lt)) if lt is not None else 0.0
    out["long_term"] = (lt / norm).tolist() if norm > 0 else None
    return out
