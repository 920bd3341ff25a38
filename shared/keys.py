"""Online-store key schema, shared by the edge (reads) and the stream processor (writes).

Every key carries a Redis Cluster hash tag (the ``{...}`` part decides the slot), chosen so that what one
script must touch together shares a slot, and what does not is spread:
| tag | keys | why |
|---|---|---|
| ``{t:sid}`` (tenant + session) | session | the edge and tier 2 read one session; the processor's writes spread by session |
| ``{t:u:uid}`` (tenant + user) | profile, purchases | the origin reads a user's keys in one pipeline |
| ``{t:b:slot}`` (tenant + slot) | bandit | one hash per slot: a tenant's slots spread over shards |
| ``{t:i:imp}`` (tenant + impression) | impression, pending clicks | the click join touches both; impressions spread |
| ``{stream}`` | watermarks, log ids/resets, dedup buckets, cart deadlines, trigger outbox, journal | the processor's
  control state: one slot, so its checks and the trigger relay are single-slot scripts |
| ``slot_tag(n)`` | ``done_key(n)`` | the processor's per-slot marks of applied journal entries (cluster only) |
A script touches one slot, or (the processor on a cluster: ``streaming.cluster_store``) the keys of one node with
``allow-cross-slot-keys``. The edge's, tier 2's and the origin's reads are single keys or pipelines (split per node
by the cluster client). Publishing (``INVALIDATION_CHANNEL``) is classic pub/sub, which a cluster broadcasts.

Ids enter keys through ``part``: an id holding none of ``{ } : %`` is used as is (every id the project
generates); otherwise those four characters are percent-encoded (``%7B %7D %3A %25``). So no component can
close a hash tag or add a key segment, and the key of one kind (session, profile, slot, impression...) can
never equal a key of another kind, whatever the ids: key building is injective.
- session:  HASH  vec (float32 little-endian bytes), updated_ms (int)
- bandit:   HASH  c:<item_id> clicks, n:<item_id> impressions, e:<item_id> expected clicks in millionths (the
            sum of the impressions' ``prior``; HINCRBY by the processor)
- profile:  HASH  recent_categories (optional JSON list, most recent first; without it the origin ranks the
            processor's cat:<name> affinities), updated_ms (int), stated (JSON
            {"categories": [...], "brands": [...]}: the user's latest preference event)  (read by the origin)
- purchases: ZSET item_id -> last purchase ts_ms, the MAX_PURCHASES most recent (written by the processor,
             read by the origin's "already purchased" filter and co-visitation seeds)
"""

from __future__ import annotations

import hashlib

PREFIX = "strata"


def part(s: str) -> str:
    """An id as a key component: unchanged unless it holds ``{ } : %``, which are percent-encoded."""
    if "{" in s or "}" in s or ":" in s or "%" in s:
        return s.replace("%", "%25").replace("{", "%7B").replace("}", "%7D").replace(":", "%3A")
    return s


def session_key(tenant: str, session_id: str) -> str:
    return f"{PREFIX}:{{{part(tenant)}:{part(session_id)}}}:session"


def bandit_key(tenant: str, slot: str) -> str:
    return f"{PREFIX}:{{{part(tenant)}:b:{part(slot)}}}:bandit"


def profile_key(tenant: str, user_id: str) -> str:
    return f"{PREFIX}:{{{part(tenant)}:u:{part(user_id)}}}:profile"


MAX_PURCHASES = 500


def purchases_key(tenant: str, user_id: str) -> str:
    return f"{PREFIX}:{{{part(tenant)}:u:{part(user_id)}}}:purchases"


def clicks_field(item_id: str) -> str:
    return f"c:{item_id}"


def imps_field(item_id: str) -> str:
    return f"n:{item_id}"


EXPECTED_SCALE = 1_000_000      # expected clicks are summed in millionths (HINCRBY adds integers exactly)


def expected_field(item_id: str) -> str:
    return f"e:{item_id}"


# -- written by the stream processor -------------------------------------------------------------------------
# - session:     also acc (float64 accumulator bytes), ref_ms, events (count applied), recent (the latest item
#                ids joined by \x1f, newest first, at most 1 KiB, repeats kept: shared.ranking.session_update.push_recent;
#                readers take the 30 latest distinct with recent_items)
# - profile:     HASH  lt long-term vector (float64 bytes; added to atomically), cat:<name>/brand:<name> affinity
#                in hundredths (view 100, cart 300, purchase 500, stated preference 1000; decayed daily, the
#                strongest N per map kept), v:<day>/p:<day> views/purchases per UTC day (the last days only),
#                orders, revenue_cents, consent:<flag> 0/1, mday (UTC day of its last decay); expires after
#                inactivity
# - bandit:      expires after inactivity; at most N items per slot (the most shown)
# - impression:  HASH  slot, ts, items (\x1f-joined), clicked:<item>  (TTL: the click join window)
# - seen:        SET per dedup bucket of seen_member(tenant, event_id) (an id is remembered 1-2 dedup TTLs)
# - watermark:   HASH  <topic>:<partition> -> last applied offset

def impression_key(tenant: str, impression_id: str) -> str:
    return f"{PREFIX}:{{{part(tenant)}:i:{part(impression_id)}}}:imp"


def pending_clicks_key(tenant: str, impression_id: str) -> str:
    """Clicks that arrived before their impression (SET of item ids; TTL: the join window)."""
    return f"{PREFIX}:{{{part(tenant)}:i:{part(impression_id)}}}:pclk"


def seen_key(tenant: str, event_id: str) -> str:
    """One key per event id (the naive baseline's dedup; the processor uses the bucketed sets below)."""
    return f"{PREFIX}:{{{part(tenant)}:e:{part(event_id)}}}:seen"


def seen_member(tenant: str, event_id: str) -> str:
    """An applied event's id in the processor's dedup sets (length-prefixed: no separator to collide on)."""
    return f"{len(tenant)}:{tenant}{event_id}"


def seen_bucket_key(bucket: int) -> str:
    """SET of ``seen_member``s applied in dedup bucket ``bucket`` (processing time // dedup TTL); an id is
    checked against the current and the previous bucket, so it is remembered at least one TTL."""
    return f"{STREAM}:seen:{bucket}"


STREAM = f"{PREFIX}:{{stream}}"          # the processor's control state: one slot
WATERMARK_KEY = f"{STREAM}:applied"                # HASH <topic>:<partition> -> offset
LOG_IDS_KEY = f"{STREAM}:log-ids"        # HASH <topic> -> topic id (hex) the watermarks belong to
LOG_RESETS_KEY = f"{STREAM}:log-resets"  # HASH <topic>[:<partition>] -> JSON of a detected reset (expires)
CART_DEADLINES_KEY = f"{STREAM}:cart-deadlines"      # ZSET JSON [tenant, session, user] -> deadline ms
TRIGGER_OUTBOX_KEY = f"{STREAM}:trigger-outbox"      # LIST of JSON trigger messages to publish
INVALIDATION_CHANNEL = f"{PREFIX}:invalidate"   # pub/sub: msgpack [[tenant, session_id], ...] per written batch
FIELD_SEP = "\x1f"

# -- the processor's journal on a cluster (``streaming.cluster_store``) ---------------------------------------
JOURNAL_KEY = f"{STREAM}:journal"       # HASH journal id -> msgpack [wm fields, plan row, invalidation message]
PENDING_KEY = f"{STREAM}:pending"       # HASH <topic>:<partition> -> journal id not yet applied everywhere
JOURNAL_SEQ_KEY = f"{STREAM}:journal-seq"   # INCR: journal ids
WRITES_KEY = f"{STREAM}:writes"         # INCR by a write that has nothing else to write (so WAIT has a write)

_SLOT_TAGS: list[str] = []


def slot_tag(slot: int) -> str:
    """A hash tag that maps to cluster slot ``slot`` (the first ``n`` whose CRC16 lands there; 0-16383)."""
    if not _SLOT_TAGS:
        from binascii import crc_hqx
        tags: list[str | None] = [None] * 16384
        left, n = 16384, 0
        while left:
            t = str(n)
            s = crc_hqx(t.encode(), 0) % 16384
            if tags[s] is None:
                tags[s] = t
                left -= 1
            n += 1
        _SLOT_TAGS.extend(tags)  # type: ignore[arg-type]
    return _SLOT_TAGS[slot]


def done_key(slot: int) -> str:
    """HASH <topic>:<partition> -> the last journal id applied to this slot's keys by that partition."""
    return f"{PREFIX}:{{{slot_tag(slot)}}}:done"


# -- users: consent and erasure (streaming.users) ---------------------------------------------------------------
ERASURE_CHANNEL = f"{PREFIX}:erase"            # pub/sub: msgpack [tenant, user_id] of an erased user


def user_sessions_key(tenant: str, user_id: str) -> str:
    """SET of the user's session ids (written by the processor; what an erasure deletes)."""
    return f"{PREFIX}:{{{part(tenant)}:u:{part(user_id)}}}:sessions"


def user_hash(tenant: str, user_id: str) -> str:
    """A user id as erasure records keep it: its hash, never the id."""
    return hashlib.sha256(f"{tenant}\x1f{user_id}".encode()).hexdigest()[:32]


def erased_key(tenant: str, user_id: str) -> str:
    """An erased user's tombstone (erasure time in ms), keyed by ``user_hash``, not the id."""
    return f"{PREFIX}:{{{part(tenant)}}}:erased:{user_hash(tenant, user_id)}"


def audit_key(tenant: str) -> str:
    """STREAM of the tenant's audited admin actions (user data exported or erased)."""
    return f"{PREFIX}:{{{part(tenant)}}}:audit"
