"""Online-store key schema, shared by the edge (reads) and the stream processor (writes).

Keys carry Redis Cluster hash tags so one session's keys live on one shard.
- session:  HASH  vec (float32 little-endian bytes), updated_ms (int)
- bandit:   HASH  c:<item_id> clicks, n:<item_id> impressions  (HINCRBY by the processor)
- profile:  HASH  recent_categories (JSON list, most recent first), updated_ms (int)  (read by the origin)
"""

from __future__ import annotations

PREFIX = "strata"


def session_key(tenant: str, session_id: str) -> str:
    return f"{PREFIX}:{{{tenant}:{session_id}}}:session"


def bandit_key(tenant: str, slot: str) -> str:
    return f"{PREFIX}:{{{tenant}}}:bandit:{slot}"


def profile_key(tenant: str, user_id: str) -> str:
    return f"{PREFIX}:{{{tenant}:u:{user_id}}}:profile"


def clicks_field(item_id: str) -> str:
    return f"c:{item_id}"


def imps_field(item_id: str) -> str:
    return f"n:{item_id}"
