"""Upper tiers' answers kept at the edge per session, so the next page of an escalated session is fast.

Keyed like the semantic response cache (tenant, session, slot, context bucket, age gate, consent, k,
explain, candidates, live-model tag), separate from it: an escalated answer is never served as the
edge's own. Entries expire after ``router.answer_ttl_s`` and are dropped with the session's other cached
answers when the stream processor says its vector changed (``EdgeNode.invalidate_session``).
"""

from __future__ import annotations

from strata.edge.caches import TTLCache
from strata.shared.ranking.stages.ctx import Upstream


class EscalatedAnswers:
    __slots__ = ("answers", "by_session")

    def __init__(self, size: int, ttl_s: float) -> None:
        self.answers = TTLCache(size, ttl_s)
        self.by_session = TTLCache(size, ttl_s)      # (tenant, session) -> its keys

    def get(self, key: tuple) -> Upstream | None:
        return self.answers.get(key)

    def put(self, key: tuple, answer: Upstream) -> None:
        self.answers.put(key, answer)
        session = key[:2]
        keys = self.by_session.get_entry(session)
        if keys is None or keys[0] > self.by_session.ttl:
            self.by_session.put(session, [key])
        else:
            keys[1].append(key)

    def drop_session(self, tenant: str, session_id: str) -> int:
        keys = self.by_session.discard((tenant, session_id)) or ()
        return sum(self.answers.discard(k) is not None for k in keys)

    def __len__(self) -> int:
        return len(self.answers)
