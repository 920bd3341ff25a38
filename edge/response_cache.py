"""Answers cached at the PoP: an exact-body cache in front of a semantic one.

- exact: the raw body (a digest of a big one) (+ content type + live-model tag) -> answer; a repeated body skips
  decoding, validation and key building;
- semantic: (tenant, session, slot, context bucket, age gate, consent, k, explain, candidates,
  live-model tag) -> answer.
Both hold pre-encoded ``Answer`` bytes and expire after ``response_ttl_s``. The live-model tag changes
with every new bundle and every new guardrail policy, so no answer outlives the model or policy that
made it.
"""

from __future__ import annotations

from strata.edge.caches import TTLCache
from strata.shared.config import CacheSettings
from strata.shared.contracts.api import RecommendRequest
from strata.shared.serving.answers import Answer


class ResponseCache:
    __slots__ = ("semantic", "exact", "hour_bucket", "by_session")

    def __init__(self, cfg: CacheSettings) -> None:
        self.semantic = TTLCache(cfg.response_size, cfg.response_ttl_s)
        exact_size = min(cfg.exact_size, cfg.response_size)
        self.exact = TTLCache(exact_size, cfg.response_ttl_s) if exact_size else None
        self.hour_bucket = cfg.hour_bucket
        # (tenant, session) -> keys of its cached answers, so an invalidation drops them at once
        self.by_session = TTLCache(cfg.response_size, cfg.response_ttl_s)

    def key(self, req: RecommendRequest, tag: tuple) -> tuple:
        ctx = req.context
        return (req.tenant, req.session_id, req.slot, ctx.channel, ctx.device, ctx.country,
                ctx.hour // self.hour_bucket, ctx.age_verified, ctx.consent, req.k, req.explain,
                None if req.candidates is None else tuple(req.candidates), tag)

    def remember(self, key: tuple, exact_key: tuple | None, answer: Answer) -> None:
        self.semantic.put(key, answer)
        if exact_key is not None:               # set by the exact_cache stage only when that cache is on
            self.exact.put(exact_key, answer)   # type: ignore[union-attr]
        session = key[:2]
        keys = self.by_session.get_entry(session)
        if keys is None or keys[0] > self.by_session.ttl:
            self.by_session.put(session, [(key, exact_key)])
        else:
            keys[1].append((key, exact_key))

    def drop_session(self, tenant: str, session_id: str) -> int:
        """Forget every cached answer of the session (its vector changed); returns how many."""
        keys = self.by_session.discard((tenant, session_id)) or ()
        n = 0
        for key, exact_key in keys:                          # (semantic key, exact-body key or None)
            n += self.semantic.discard(key) is not None
            if exact_key is not None and self.exact is not None:
                n += self.exact.discard(exact_key) is not None
        return n

    @property
    def hits(self) -> int:
        """Exact-body hits plus hits on the semantic key (exact misses fall through to the latter)."""
        return self.semantic.hits + (self.exact.hits if self.exact is not None else 0)

    @property
    def misses(self) -> int:
        return self.semantic.misses
