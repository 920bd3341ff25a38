"""The session vector: from the PoP cache without awaiting, else from the store within its budget."""

from __future__ import annotations

from strata.edge.session_source import Session, SessionSource
from strata.edge.stages.ctx import RecommendCtx
from strata.shared.serving.pipeline import SUSPEND


class SessionStage:
    name = "session"
    suspends = True

    def __init__(self, source: SessionSource) -> None:
        self.source = source

    def run(self, ctx: RecommendCtx) -> object:
        req = ctx.req
        session = self.source.cached(req.tenant, req.session_id)
        if session is None:
            return SUSPEND                  # the front door awaits complete(), no Task otherwise
        _apply(ctx, session)
        return None

    async def complete(self, ctx: RecommendCtx) -> None:
        req = ctx.req
        _apply(ctx, await self.source.fetch(req.tenant, req.session_id))


def _apply(ctx: RecommendCtx, session: Session) -> None:
    ctx.vec = session.vec
    ctx.vec_age_s = session.age_s
    ctx.degraded = session.degraded
