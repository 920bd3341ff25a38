"""The user's profile (session vector, recent categories) from the store, or a cached one when it fails.

Without personalization consent nothing is read: the request is ranked on context (channel, device,
hour) and its own query only.
"""

from __future__ import annotations

from strata.origin.profiles import ProfileSource
from strata.origin.stages.ctx import OriginCtx
from strata.shared.serving.pipeline import SUSPEND


class ProfileStage:
    name = "profile"
    suspends = True

    def __init__(self, source: ProfileSource) -> None:
        self.source = source

    def run(self, ctx: OriginCtx) -> object:
        if not ctx.oreq.consent or not self.source.store.configured:
            return None
        return SUSPEND

    async def complete(self, ctx: OriginCtx) -> None:
        req = ctx.oreq.req
        ctx.profile = p = await self.source.get(req.tenant, req.user_id, req.session_id)
        if p.degraded:
            ctx.degraded = True
            ctx.route_reasons.append("profile_stale" if p.stale_s is not None else "profile_unavailable")
