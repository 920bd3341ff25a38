"""A byte-identical body seen within the TTL is answered without decoding, validating or ranking."""

from __future__ import annotations

from hashlib import blake2b

from strata.edge.response_cache import ResponseCache
from strata.edge.session_client import StoreHealth
from strata.edge.stages.ctx import EdgeCtx
from strata.shared.serving.pipeline import ANSWERED


class ExactCache:
    name = "exact_cache"

    def __init__(self, cache: ResponseCache, health: StoreHealth | None = None) -> None:
        self.cache = cache.exact
        self.health = health            # a degraded answer is not served once the store is back

    def run(self, ctx: EdgeCtx) -> object:
        if self.cache is None:
            return None
        key = ctx.exact_key = (blake2b(ctx.body, digest_size=16).digest(), ctx.ctype, ctx.model.tag)
        answer = self.cache.get(key)
        if answer is None or (answer.degraded and self.health is not None and self.health.up):
            return None
        ctx.answer = answer
        ctx.cache = "hit"
        return ANSWERED
