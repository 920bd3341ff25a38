"""What a batch of log records does to the store: a pure plan, computed from a snapshot of the store.

The processor reads a snapshot (``StoreReads``: applied-offset watermarks, seen event ids, session
states, impressions, pending clicks), computes the plan here, and writes it with one atomic script that
first checks the snapshot's watermarks and seen ids are unchanged (``streaming.store``). So a record is
applied at most once whatever crashes or rebalances happen (offsets at or below the partition's watermark
and event ids already seen are skipped), and at least once because offsets are committed only after the
write. Per session, events are applied in log order with the arithmetic of
``shared.ranking.session_update.apply_event``, vectorised over the batch's sessions (``Planner._fold``; a unit test
holds it bit-equal to the scalar rule): the stored vector equals a replay of the session's distinct events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson

from strata.shared import keys as K
from strata.shared.auth.impressions import ImpressionSigner
from strata.shared.config import StreamingSettings
from strata.shared.contracts.api import MAX_K, Event
from strata.shared.ranking.session_update import SessionAcc, push_recent, session_vecs
from strata.streaming.catalog import Catalog

DAY_MS = 86_400_000
SIGNED_SKEW_MS = 300_000     # a signed id may be this far ahead of the log's clock (the tiers' clocks)
AFFINITY_SCALE = 100         # affinities are stored in hundredths: the daily decay keeps two digits
_PROFILE_TYPES = frozenset({"view", "purchase", "preference"})     # always write their user's profile
AFFINITY = {"view": 1 * AFFINITY_SCALE, "click": 1 * AFFINITY_SCALE, "add_to_cart": 3 * AFFINITY_SCALE,
            "purchase": 5 * AFFINITY_SCALE}
PREFERENCE_AFFINITY = 10 * AFFINITY_SCALE
KNOWN_PROFILES = 200_000     # profiles a planner remembers as checked today (~20 MB); past it, it forgets all


@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    event: Event | None          # None: the record failed validation (``error`` says why)
    raw: bytes = b""
    error: tuple[str | None, str] | None = None     # (field, reason)
    wm_field: str = ""           # the partition's watermark field, "topic:partition" (filled in when not given)
    log_ms: int = 0              # the record's log timestamp (when it was produced; 0: unknown)
    code: str = ""               # the dead-letter code when not the default (``impression_signature``)
    epoch: int = 0               # the processor's log epoch when it was fetched (``StreamProcessor._epoch``)

    def __post_init__(self) -> None:
        if not self.wm_field:
            self.wm_field = f"{self.topic}:{self.partition}"


@dataclass(slots=True)
class Impression:
    slot: str
    ts_ms: int
    items: list[str]
    clicked: set[str]


@dataclass(slots=True)
class Snapshot:
    watermarks: dict[str, int]                       # wm field -> last applied offset (-1: none)
    seen: set[str]                                   # seen members (``keys.seen_member``) already applied
    sessions: dict[str, tuple[SessionAcc | None, int]]   # session key -> (state, events applied)
    impressions: dict[str, Impression | None]
    pending: dict[str, set[str]]                     # pending-clicks key -> item ids
    seen_bucket: int = 0                             # the dedup bucket the snapshot checked (and the plan writes)
    recent: dict[str, bytes] = field(default_factory=dict)    # session key -> stored ``recent`` field
    ttl_at: dict[str, int] = field(default_factory=dict)      # session key -> when its expiry was set to (ms)
    erased: dict[str, int] = field(default_factory=dict)      # tombstone key -> erasure time (ms) of erased users


@dataclass(slots=True)
class StoreReads:
    """Which keys the plan depends on."""

    wm_fields: set[str] = field(default_factory=set)
    seen_members: set[str] = field(default_factory=set)
    session_keys: set[str] = field(default_factory=set)
    impression_keys: set[str] = field(default_factory=set)
    pending_keys: set[str] = field(default_factory=set)
    erased_keys: set[str] = field(default_factory=set)       # tombstones of the batch's users


@dataclass(slots=True)
class SessionWrite:
    key: str
    acc: bytes                   # float64 little-endian accumulator
    ref_ms: int
    events: int
    vec: bytes | None            # float32 unit vector; None: no direction (the stored ``vec`` is left as is)
    recent: bytes = b""          # the session's recent item ids, newest first (``push_recent``)
    ttl_at: int = 0              # unix ms the key expires at after this write (kept in the state, ``st``)
    expire_at: int = 0           # = ttl_at when this write sets the key's expiry; 0: its expiry stays


@dataclass(slots=True)
class Plan:
    wm_expected: dict[str, int]
    wm_new: dict[str, int]
    seen_new: list[str]                      # ``keys.seen_member`` of every applied event
    ops: list[tuple]                         # other writes, run in this order
    seen_bucket: int = 0
    incr: dict[tuple[str, str], int] = field(default_factory=dict)     # (key, field) -> HINCRBY amount
    lt: dict[str, np.ndarray] = field(default_factory=dict)            # profile key -> float64 to add to "lt"
    session_writes: list[SessionWrite] = field(default_factory=list)
    updated_ms: int = 0
    applied: list[Event] = field(default_factory=list)
    duplicates: int = 0          # event id seen before (a client retry, or a replay after the dedup key)
    replayed: int = 0            # offset at or below the watermark (redelivery after a crash/rebalance)
    dead: list[Record] = field(default_factory=list)
    resets: list[tuple[str, int, int]] = field(default_factory=list)  # (wm field, old watermark, offset): log reset
    sessions: list[tuple[str, str]] = field(default_factory=list)    # (tenant, session) updated: invalidated
    profiles: dict[str, None] = field(default_factory=dict)   # profile keys written
    checked: list[str] = field(default_factory=list)  # the profiles the script checks (type, daily pass, size)
    named: set[str] = field(default_factory=set)      # profiles given affinities named by the event (preference)
    bandits: dict[str, None] = field(default_factory=dict)    # bandit keys written (expiry, item cap)
    bounded: list[tuple[str, str, int]] = field(default_factory=list)   # HINCRBYs checked for int64 overflow first
    rejected: dict[str, int] = field(default_factory=dict)    # impressions/clicks not counted, by reason
    erased: int = 0              # events of an erased user, older than its erasure: dropped
    user_sessions: dict[str, set[str]] = field(default_factory=dict)    # user index key -> sessions written
    # the records' partitions when ``wm_expected`` was emptied (a replaced log's batch, applied by id alone): the
    # cluster's journal still marks them pending and done (``streaming.cluster_store``)
    partitions: list[str] = field(default_factory=list)
    # the state this plan leaves behind (what the next batch would read once the write landed)
    after_sessions: dict[str, tuple[SessionAcc, int]] = field(default_factory=dict)
    after_recent: dict[str, bytes] = field(default_factory=dict)
    after_ttl_at: dict[str, int] = field(default_factory=dict)
    after_impressions: dict[str, Impression] = field(default_factory=dict)
    after_pending: dict[str, set[str]] = field(default_factory=dict)     # deleted: empty set


def overlay(snap: Snapshot, prev: Plan) -> None:
    """Make ``snap`` what it would be after ``prev``'s write, whether the read ran before or after it (the
    processor reads the next batch while the previous write is in flight, and sends the next write only
    once that one landed: so ``prev`` is known to be written whenever the result is used)."""
    reset = {f for f, _, _ in prev.resets}
    for f, v in prev.wm_new.items():
        if f in snap.watermarks and (v > snap.watermarks[f] or f in reset):   # a reset moves a watermark down
            snap.watermarks[f] = v
    snap.seen.update(prev.seen_new)
    for k in snap.sessions.keys() & prev.after_sessions.keys():
        snap.sessions[k] = prev.after_sessions[k]
    for k in snap.sessions.keys() & prev.after_recent.keys():
        snap.recent[k] = prev.after_recent[k]
    for k in snap.sessions.keys() & prev.after_ttl_at.keys():
        snap.ttl_at[k] = prev.after_ttl_at[k]
    for k in snap.impressions.keys() & prev.after_impressions.keys():
        snap.impressions[k] = prev.after_impressions[k]
    for k in snap.pending.keys() & prev.after_pending.keys():
        snap.pending[k] = set(prev.after_pending[k])


def reads_for(records: list[Record]) -> StoreReads:
    r = StoreReads()
    users: set[tuple[str, str]] = set()
    for rec in records:
        r.wm_fields.add(rec.wm_field)
        ev = rec.event
        if ev is None:
            continue
        r.seen_members.add(K.seen_member(ev.tenant, ev.event_id))
        users.add((ev.tenant, ev.user_id))
        if ev.item_id is not None:
            r.session_keys.add(K.session_key(ev.tenant, ev.session_id))
        if ev.type == "click" and ev.impression_id is not None:
            r.impression_keys.add(K.impression_key(ev.tenant, ev.impression_id))
        elif ev.type == "impression":      # logged before (another batch)? then it is not counted again
            iid = ev.impression_id
            assert iid is not None          # parse_event: an impression names its id
            r.impression_keys.add(K.impression_key(ev.tenant, iid))
            r.pending_keys.add(K.pending_clicks_key(ev.tenant, iid))
    r.erased_keys = {K.erased_key(t, u) for t, u in users}
    return r


class _Moves:
    """The batch's session-vector moves, folded per session in log order with numpy (``fold``)."""

    __slots__ = ("index", "keys", "names", "session", "row", "weight", "ts", "item")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.keys: list[str] = []
        self.names: list[tuple[str, str]] = []
        self.session: list[int] = []
        self.row: list[int] = []
        self.weight: list[float] = []
        self.ts: list[int] = []
        self.item: list[str] = []

    def add(self, skey: str, tenant: str, session_id: str, row: int, weight: float, ts_ms: int, item: str) -> None:
        i = self.index.get(skey)
        if i is None:
            i = self.index[skey] = len(self.keys)
            self.keys.append(skey)
            self.names.append((tenant, session_id))
        self.session.append(i)
        self.row.append(row)
        self.weight.append(weight)
        self.ts.append(ts_ms)
        self.item.append(item)


class Planner:
    def __init__(self, cfg: StreamingSettings, catalog: Catalog, signer: ImpressionSigner | None = None) -> None:
        """``signer``: impressions and clicks count only with an impression id it verifies (auth on)."""
        self.cfg = cfg
        self.signer = signer
        self.rule = cfg.session
        self.catalog = catalog
        self.vectors64 = np.asarray(catalog.vectors, dtype=np.float64)
        self.join_ms = int(cfg.click_join_window_s * 1000)
        self.examination = cfg.position_weights(MAX_K)     # expected clicks: the scorer's p times this
        self.cart_ms = int(cfg.abandoned_cart_s * 1000)
        self.session_ttl_ms = int(cfg.session_ttl_s * 1000)
        self.profile_ttl_ms = int(cfg.profile_ttl_s * 1000)
        # a session key's expiry is pushed to ttl + 10% when it would come within ttl of the write: so it lives
        # at least ``session_ttl_s`` after its last event (at most 1.1x), with one PEXPIREAT per ~10% of the ttl
        self.ttl_slack_ms = max(self.session_ttl_ms // 10, 1)
        self.weights = dict(cfg.session.weights)
        # profile key -> UTC day its key type and daily pass were last checked by a write of this planner: the
        # script checks a profile at its first write of the day (or when a preference names new affinities)
        self._known: dict[str, int] = {}
        self.cat_fields = ["cat:" + c for c in catalog.categories]       # profile fields per catalog row
        self.brand_fields = ["brand:" + b for b in catalog.brands]
        # A record at or below its partition's watermark is a replay only if its event id was applied: an id is
        # remembered at least ``dedup_ttl_s``, so for a record produced within that time (less a minute of clock
        # skew between the ingest and the processor) an unknown id proves the log was reset (restarted empty,
        # recreated): its offsets started again below the watermark.
        ttl_ms = int(cfg.dedup_ttl_s * 1000)
        self.verify_ms = ttl_ms - min(60_000, ttl_ms // 10)

    def plan(self, records: list[Record], snap: Snapshot, now_ms: int) -> Plan:
        wm = dict(snap.watermarks)
        plan = Plan({f: snap.watermarks.get(f, -1) for f in {r.wm_field for r in records}}, {}, [], [],
                     seen_bucket=snap.seen_bucket, updated_ms=now_ms)
        seen = snap.seen
        new_seen: set[str] = set()
        imps = dict(snap.impressions)
        pending = {k: set(v) for k, v in snap.pending.items()}
        moves = _Moves()
        lt_keys: list[str] = []
        fresh_after = now_ms - self.verify_ms
        erased = _Tombstones(snap.erased)
        for rec in records:
            wf = rec.wm_field
            ev = rec.event
            if rec.offset <= wm.get(wf, -1):
                if ev is None or rec.log_ms < fresh_after:
                    plan.replayed += 1
                    continue
                sm = f"{len(ev.tenant)}:{ev.tenant}{ev.event_id}"
                if sm in seen or sm in new_seen:
                    plan.replayed += 1
                    continue
                plan.resets.append((wf, wm[wf], rec.offset))     # unknown id below the watermark: a new log
            wm[wf] = rec.offset
            plan.wm_new[wf] = rec.offset
            if ev is None:
                plan.dead.append(rec)
                continue
            sm = f"{len(ev.tenant)}:{ev.tenant}{ev.event_id}"        # keys.seen_member, inlined
            if sm in seen or sm in new_seen:
                plan.duplicates += 1
                continue
            new_seen.add(sm)
            plan.seen_new.append(sm)
            if erased.covers(ev):               # the erased history of a user, arriving late: dropped
                plan.erased += 1
                continue
            if self.signer is not None and ev.impression_id is not None:
                why = self._unsigned(ev, imps, rec.log_ms or now_ms)
                if why is not None:
                    plan.rejected[why] = plan.rejected.get(why, 0) + 1
                    plan.dead.append(Record(rec.topic, rec.partition, rec.offset, None, rec.raw,
                                            ("impression_id", f"impression signature: {why}"), wf, rec.log_ms,
                                            "impression_signature"))
                    continue
            plan.applied.append(ev)
            self._apply(ev, plan, moves, lt_keys, imps, pending, now_ms)
        if moves.keys:
            self._fold(moves, lt_keys, snap, plan)
        for (tenant, user), sessions in _user_sessions(plan.applied, moves).items():
            ukey = K.user_sessions_key(tenant, user)
            plan.ops.append(("SADD", ukey, *sorted(sessions)))
            plan.ops.append(("PEXPIRE", ukey, self.profile_ttl_ms))
        plan.after_impressions = {k: v for k, v in imps.items() if v is not None}
        plan.after_pending = pending
        day, known, named = now_ms // DAY_MS, self._known, plan.named
        plan.checked = [k for k in plan.profiles if known.get(k) != day or k in named]
        return plan

    def _unsigned(self, ev: Event, imps: dict, log_ms: int) -> str | None:
        """Why an impression or click must not count (None: it may): ``forged`` (not made by a tier for this
        tenant and session, or these items), ``expired`` (older than the join window when it reached the log),
        ``replayed`` (an impression id counted before, a click on an item of it already counted)."""
        signer, iid = self.signer, ev.impression_id
        assert signer is not None and iid is not None       # the caller checked both
        items, prior = (ev.items, ev.prior) if ev.type == "impression" else (None, None)
        ts = signer.check(iid, ev.tenant, ev.session_id, items, prior)
        if ts is None or ts > log_ms + SIGNED_SKEW_MS:
            return "forged"
        if log_ms - ts > self.join_ms:
            return "expired"
        imp = imps.get(K.impression_key(ev.tenant, iid))
        if imp is not None and (ev.type == "impression" or ev.item_id in imp.clicked):
            return "replayed"
        return None

    def confirm(self, plan: Plan) -> None:
        """The plan's write landed: its checked profiles passed their checks and daily pass today."""
        known = self._known
        if len(known) > KNOWN_PROFILES:
            known.clear()
        day = plan.updated_ms // DAY_MS
        for k in plan.checked:
            known[k] = day

    def _apply(self, ev: Event, plan: Plan, moves: _Moves, lt_keys: list, imps: dict, pending: dict,
               now_ms: int) -> None:
        t = ev.type
        tenant = ev.tenant
        pkey = K.profile_key(tenant, ev.user_id)
        incr = plan.incr
        ops = plan.ops
        if ev.consent:
            ops.append(("HSET", pkey, *[x for k, v in ev.consent.items() for x in (f"consent:{k}", int(v))]))
        wrote = ev.consent is not None or t in _PROFILE_TYPES       # the profile is written (kept bounded)
        item = ev.item_id
        if item is not None:
            row = self.catalog.index.get(item)
            if row is not None:
                w = self.weights.get(t, 0.0)
                if w != 0.0:        # decay runs on the processor's clock: an event time ahead of it counts as now
                    ts = ev.ts_ms if ev.ts_ms <= now_ms else now_ms
                    moves.add(K.session_key(tenant, ev.session_id), tenant, ev.session_id, row, w, ts, item)
                    lt_keys.append(pkey)
                    wrote = True
                aff = AFFINITY.get(t, 0)
                if aff:
                    k = (pkey, self.cat_fields[row])
                    incr[k] = incr.get(k, 0) + aff
                    k = (pkey, self.brand_fields[row])
                    incr[k] = incr.get(k, 0) + aff
                    wrote = True
        if wrote:
            plan.profiles[pkey] = None
        if t == "view":
            k = (pkey, f"v:{ev.ts_ms // DAY_MS}")
            incr[k] = incr.get(k, 0) + 1
        elif t == "purchase":
            _add(incr, pkey, f"p:{ev.ts_ms // DAY_MS}", 1)
            _add(incr, pkey, "orders", 1)
            price, quantity = ev.price, ev.quantity
            assert price is not None and quantity is not None      # parse_event: a purchase names both
            plan.bounded.append((pkey, "revenue_cents", round(price * quantity * 100)))
            bkey = K.purchases_key(tenant, ev.user_id)
            ops.append(("ZADD", bkey, "GT", ev.ts_ms, ev.item_id))     # GT: a replayed older purchase keeps the newer
            ops.append(("ZREMRANGEBYRANK", bkey, 0, -(K.MAX_PURCHASES + 1)))
            ops.append(("PEXPIRE", bkey, self.profile_ttl_ms))
            ops.append(("ZREM", K.CART_DEADLINES_KEY, _cart_member(ev)))
            ops.append(("RPUSH", K.TRIGGER_OUTBOX_KEY, orjson.dumps({
                "trigger_id": f"post_purchase:{tenant}:{ev.event_id}", "type": "post_purchase",
                "tenant": tenant, "user_id": ev.user_id, "session_id": ev.session_id, "ts": ev.ts_ms,
                "item_id": ev.item_id, "quantity": ev.quantity, "price": ev.price})))
        elif t == "add_to_cart":
            ops.append(("ZADD", K.CART_DEADLINES_KEY, "GT", ev.ts_ms + self.cart_ms, _cart_member(ev)))
        elif t == "preference":       # the latest statement, as said (the origin searches with it)
            plan.named.add(pkey)
            ops.append(("HSET", pkey, "stated", orjson.dumps({"categories": ev.categories or [],
                                                              "brands": ev.brands or []})))
            for c in ev.categories or ():
                _add(incr, pkey, f"cat:{c}", PREFERENCE_AFFINITY)
            for b in ev.brands or ():
                _add(incr, pkey, f"brand:{b}", PREFERENCE_AFFINITY)
        elif t == "impression":
            self._impression(ev, imps, pending, incr, ops, plan)
        elif t == "click" and ev.impression_id is not None:
            self._click(ev, imps, pending, incr, ops, plan.bandits)

    def _fold(self, moves: _Moves, lt_keys: list[str], snap: Snapshot, plan: Plan) -> None:
        """Apply every move to its session's state, in log order per session, a round at a time (round r = the
        r-th move of every session), with exactly the arithmetic of ``shared.ranking.session_update.apply_event``;
        then the sessions' new vectors, and the profiles' long-term sums."""
        n_s = len(moves.keys)
        dim = self.vectors64.shape[1]
        acc = np.zeros((n_s, dim), dtype=np.float64)
        has = np.zeros(n_s, dtype=bool)
        ref = [0] * n_s
        count = [0] * n_s
        known: list[int] = []
        stored: list[np.ndarray] = []
        get = snap.sessions.get
        for i, skey in enumerate(moves.keys):
            state, n = get(skey, (None, 0))
            count[i] = n
            if state is not None:
                known.append(i)
                stored.append(state.acc)
                ref[i] = state.ref_ms
        if known:
            acc[known] = np.stack(stored)
            has[known] = True
        sess = np.asarray(moves.session, dtype=np.int64)
        contrib = self.vectors64[np.asarray(moves.row, dtype=np.int64)] * np.asarray(moves.weight)[:, None]
        hl_ms = self.rule.half_life_s * 1000.0
        # round of each move: how many earlier moves its session had in this batch
        rounds: list[list[int]] = []
        seen_n = [0] * n_s
        for e, s in enumerate(moves.session):
            r = seen_n[s]
            seen_n[s] = r + 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(e)
        ts = moves.ts
        for members in rounds:
            e_idx = np.asarray(members, dtype=np.int64)
            s_idx = sess[e_idx]
            fresh = ~has[s_idx]
            if fresh.any():
                acc[s_idx[fresh]] = contrib[e_idx[fresh]]
            old = np.flatnonzero(~fresh)
            if old.size:
                s_list = s_idx.tolist()
                dec: list[float] = []          # multiplies the accumulator
                sca: list[float] = []          # multiplies the contribution
                for o in old.tolist():
                    e, s = members[o], s_list[o]
                    t, r = ts[e], ref[s]
                    if t >= r:
                        dec.append(0.5 ** ((t - r) / hl_ms))
                        sca.append(1.0)
                        ref[s] = t
                    else:
                        dec.append(1.0)
                        sca.append(0.5 ** ((r - t) / hl_ms))
                so, eo = s_idx[old], e_idx[old]
                acc[so] = acc[so] * np.array(dec)[:, None] + contrib[eo] * np.array(sca)[:, None]
            for o in np.flatnonzero(fresh).tolist():
                s = int(s_idx[o])
                ref[s] = ts[members[o]]
            has[s_idx] = True
            for s in s_idx.tolist():
                count[s] += 1
        vecs, ok = session_vecs(acc)
        acc_bytes = acc.astype("<f8").tobytes()
        vec_bytes = vecs.astype("<f4").tobytes()
        a_n, v_n = dim * 8, dim * 4
        kept = acc.copy()           # the after-state rows (views of one copy)
        writes = plan.session_writes
        after = plan.after_sessions
        new_items: list[list[str]] = [[] for _ in range(n_s)]
        for s, item in zip(moves.session, moves.item, strict=True):
            new_items[s].append(item)
        old_recent = snap.recent.get
        old_ttl = snap.ttl_at.get
        after_ttl = plan.after_ttl_at
        keep_until = plan.updated_ms + self.session_ttl_ms        # the key must live at least until then
        new_ttl = keep_until + self.ttl_slack_ms
        for i, (skey, good) in enumerate(zip(moves.keys, ok.tolist(), strict=True)):
            recent = plan.after_recent[skey] = push_recent(old_recent(skey, b""), new_items[i])
            ttl_at = old_ttl(skey, 0)
            expire_at = 0
            if ttl_at < keep_until:
                ttl_at = expire_at = after_ttl[skey] = new_ttl
            writes.append(SessionWrite(skey, acc_bytes[i * a_n:(i + 1) * a_n], ref[i], count[i],
                                       vec_bytes[i * v_n:(i + 1) * v_n] if good else None, recent, ttl_at,
                                       expire_at))
            after[skey] = (SessionAcc(kept[i], ref[i]), count[i])
        plan.sessions.extend(moves.names)
        users: dict[str, int] = {}
        uidx = np.asarray([users.setdefault(k, len(users)) for k in lt_keys], dtype=np.int64)
        sums = np.zeros((len(users), dim), dtype=np.float64)
        np.add.at(sums, uidx, contrib)
        plan.lt = dict(zip(users, sums, strict=True))

    def _impression(self, ev: Event, imps: dict, pending: dict, incr: dict, ops: list, plan: Plan) -> None:
        iid, items = ev.impression_id, ev.items
        assert iid is not None and items is not None        # parse_event: an impression names its id and items
        ikey = K.impression_key(ev.tenant, iid)
        if imps.get(ikey) is not None:       # the same impression id logged twice: counted once
            return
        imp = imps[ikey] = Impression(ev.slot, ev.ts_ms, list(items), set())
        bkey = K.bandit_key(ev.tenant, ev.slot)
        plan.bandits[bkey] = None
        for item in dict.fromkeys(items):
            _add(incr, bkey, K.imps_field(item), 1)
        if ev.prior is not None:          # the scorer's p behind each item, at its position: the expected clicks
            first: dict[str, float] = {}
            for item, p, w in zip(items, ev.prior, self.examination, strict=False):
                first.setdefault(item, p * w)
            for item, e in first.items():
                if e > 0:
                    _add(incr, bkey, K.expected_field(item), round(e * K.EXPECTED_SCALE))
        ops.append(("HSET", ikey, "slot", ev.slot, "ts", ev.ts_ms, "items", K.FIELD_SEP.join(items)))
        ops.append(("PEXPIRE", ikey, self.join_ms))
        pkey = K.pending_clicks_key(ev.tenant, iid)
        waiting = pending.get(pkey) or set()
        pending[pkey] = set()
        if waiting:
            for item in sorted(waiting):
                self._count_click(ev.tenant, ikey, imp, item, incr, ops, plan.bandits)
            ops.append(("DEL", pkey))

    def _click(self, ev: Event, imps: dict, pending: dict, incr: dict, ops: list, bandits: dict) -> None:
        iid, item = ev.impression_id, ev.item_id
        assert iid is not None and item is not None         # the caller checked the id; a click names its item
        ikey = K.impression_key(ev.tenant, iid)
        imp = imps.get(ikey)
        if imp is None:                      # the impression is not logged yet: wait for it (join window)
            pkey = K.pending_clicks_key(ev.tenant, iid)
            pending.setdefault(pkey, set()).add(item)
            ops.append(("SADD", pkey, item))
            ops.append(("PEXPIRE", pkey, self.join_ms))
        elif ev.ts_ms - imp.ts_ms <= self.join_ms:
            self._count_click(ev.tenant, ikey, imp, item, incr, ops, bandits)

    @staticmethod
    def _count_click(tenant: str, ikey: str, imp: Impression, item: str, incr: dict, ops: list, bandits: dict) -> None:
        if item in imp.items and item not in imp.clicked:
            imp.clicked.add(item)
            bkey = K.bandit_key(tenant, imp.slot)
            bandits[bkey] = None
            _add(incr, bkey, K.clicks_field(item), 1)
            ops.append(("HSET", ikey, f"clicked:{item}", 1))


class _Tombstones:
    """The batch's erased users (tombstone key -> erasure time), looked up once per (tenant, user)."""

    __slots__ = ("times", "memo")

    def __init__(self, times: dict[str, int]) -> None:
        self.times = times
        self.memo: dict[tuple[str, str], int | None] = {}

    def covers(self, ev: Event) -> bool:
        if not self.times:
            return False
        key = (ev.tenant, ev.user_id)
        if key not in self.memo:
            self.memo[key] = self.times.get(K.erased_key(ev.tenant, ev.user_id))
        at = self.memo[key]
        return at is not None and ev.ts_ms <= at


def _user_sessions(applied: list[Event], moves: _Moves) -> dict[tuple[str, str], set[str]]:
    """(tenant, user) -> the sessions whose state this plan writes (what an erasure finds the sessions by)."""
    written = set(moves.names)
    out: dict[tuple[str, str], set[str]] = {}
    for ev in applied:
        if (ev.tenant, ev.session_id) in written:
            out.setdefault((ev.tenant, ev.user_id), set()).add(ev.session_id)
    return out


def _add(incr: dict, key: str, fld: str, n: int) -> None:
    incr[(key, fld)] = incr.get((key, fld), 0) + n


def _cart_member(ev: Event) -> str:
    """The cart-deadline ZSET member: a JSON array (no separator an id could break)."""
    return orjson.dumps([ev.tenant, ev.session_id, ev.user_id]).decode()


def profile_summary(raw: dict, now_ms: int) -> dict:
    """A profile hash (bytes from the store, or str) -> counters over 7/30 days, average order value, affinities
    (in points: views 1, carts 3, purchases 5, a stated preference 10, decayed), consent."""
    today = now_ms // DAY_MS
    out: dict = {"views_7d": 0, "views_30d": 0, "purchases_7d": 0, "purchases_30d": 0, "categories": {},
                 "brands": {}, "consent": {}}
    lt: np.ndarray | None = None
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
            out["categories"][rest] = int(v) / AFFINITY_SCALE
        elif kind == "brand":
            out["brands"][rest] = int(v) / AFFINITY_SCALE
        elif kind == "consent":
            out["consent"][rest] = bool(int(v))
        elif key == "lt":
            lt = np.frombuffer(v, dtype="<f8")
    orders = int(raw.get(b"orders", raw.get("orders", 0)) or 0)
    revenue = int(raw.get(b"revenue_cents", raw.get("revenue_cents", 0)) or 0)
    out["orders"] = orders
    out["avg_order_value"] = round(revenue / orders / 100, 2) if orders else 0.0
    norm = float(np.linalg.norm(lt)) if lt is not None else 0.0
    out["long_term"] = (lt / norm).tolist() if lt is not None and norm > 0 else None
    return out
