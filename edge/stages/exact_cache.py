"""A byte-identical body seen within the TTL is answered without decoding, validating or ranking.

The key is the body itself when it is small (``RAW_KEY_BYTES``: a dict hashes and compares it, exact and
cheaper than a digest), else its 16-byte BLAKE2b digest (a big body is not kept for the TTL)."""

from __future__ import annotations

from hashlib import blake2b

from strata.edge.response_cache import ResponseCache
from strata.edge.session_client import StoreHealth
from strata.edge.stages.ctx import EdgeCtx
from strata.shared.serving.pipeline import ANSWERED

RAW_KEY_BYTES = 4096         # bodies up to this size are their own key (20k entries: at most 80 MB)


class ExactCache:
    name = "exact_cache"

    def __init__(self, cache: ResponseCache, health: StoreHealth | None = None) -> None:
        self.cache = cache.exact
        self.health = health            # a degraded answer is not served once the store is back

    def run(self, ctx: EdgeCtx) -> object:
        if self.cache is None:
            return None
        body = ctx.body
        if len(body) > RAW_KEY_BYTES:
            body = blake2b(body, digest_size=16).digest()
        caller = ctx.caller          # with auth, the tenant comes from the key, not the body: part of the key
        key = ctx.exact_key = (body, ctx.ctype, ctx.model.tag, caller.tenant if caller is not None else None)
        answer = self.cache.get(key)
        if answer is None or (answer.degraded and self.health is not None and self.health.up):
            return None
        ctx.answer = answer
        ctx.cache = "hit"
        return ANSWERED
