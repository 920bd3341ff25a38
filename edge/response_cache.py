"""Answers cached at the PoP: an exact-body cache in front of a semantic one.

- exact: the digest of the raw body (+ content type + live-model tag) -> answer; a repeated body skips
  decoding, validation and key building;
- semantic: (tenant, session, slot, context bucket, age gate, k, explain, candidates, live-model tag)
  -> answer.
Both hold pre-encoded ``Answer`` bytes and expire after ``response_ttl_s``. The live-model tag changes
with every new bundle and every new guardrail policy, so no answer outlives the model or policy that
made it.
"""

from __future__ import annotations

from edge.answers import Answer
from edge.caches import TTLCache
from shared.config import CacheSettings
from shared.contracts import RecommendRequest


class ResponseCache:
    __slots__ = ("semantic", "exact", "hour_bucket")

    def __init__(self, cfg: CacheSettings) -> None:
        self.semantic = TTLCache(cfg.response_size, cfg.response_ttl_s)
        exact_size = min(cfg.exact_size, cfg.response_size)
        self.exact = TTLCache(exact_size, cfg.response_ttl_s) if exact_size else None
        self.hour_bucket = cfg.hour_bucket

    def key(self, req: RecommendRequest, tag: tuple) -> tuple:
        ctx = req.context
        return (req.tenant, req.session_id, req.slot, ctx.channel, ctx.device, ctx.country,
                ctx.hour // self.hour_bucket, ctx.age_verified, req.k, req.explain,
                None if req.candidates is None else tuple(req.candidates), tag)

    def remember(self, key: tuple, exact_key: tuple | None, answer: Answer) -> None:
        self.semantic.put(key, answer)
        if exact_key is not None:
            self.exact.put(exact_key, answer)

    @property
    def hits(self) -> int:
        """Exact-body hits plus hits on the semantic key (exact misses fall through to the latter)."""
        return self.semantic.hits + (self.exact.hits if self.exact is not None else 0)

    @property
    def misses(self) -> int:
        return self.semantic.misses
