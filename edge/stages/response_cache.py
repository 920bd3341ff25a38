"""The semantic response cache: same tenant, session, slot, context bucket, age gate, k and candidates."""

from __future__ import annotations

from strata.edge.response_cache import ResponseCache
from strata.edge.session_client import StoreHealth
from strata.edge.stages.ctx import EdgeCtx
from strata.shared.serving.pipeline import ANSWERED


class ResponseCacheStage:
    name = "response_cache"

    def __init__(self, cache: ResponseCache, health: StoreHealth | None = None) -> None:
        self.cache = cache
        self.health = health            # a degraded answer is not served once the store is back

    def run(self, ctx: EdgeCtx) -> object:
        key = ctx.key = self.cache.key(ctx.req, ctx.model.tag)
        answer = self.cache.semantic.get(key)
        if answer is None or (answer.degraded and self.health is not None and self.health.up):
            return None
        if ctx.exact_key is not None:           # set by the exact_cache stage only when that cache is on
            self.cache.exact.put(ctx.exact_key, answer)     # type: ignore[union-attr]
        ctx.answer = answer
        ctx.cache = "hit"
        return ANSWERED
