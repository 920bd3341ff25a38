"""The session vector, behind the consent guardrail: without ``context.consent`` no personal data is read.

The stage is the only way a ranking request reaches the session (the tiers' stages read ``ctx.vec``, which
stays None without consent), so consent cannot be forgotten by a stage added later: no consent -> the
source is never asked, the answer is ranked on context only and says ``no_consent_context_only``.

A ``SessionSource`` answers without awaiting when it can (the edge's PoP cache, or no store) and otherwise
is awaited (``complete``): the edge's store read within its budget, tier 2's read of the freshest write.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from strata.shared.ranking.stages.ctx import RankCtx
from strata.shared.serving.pipeline import SUSPEND

NO_CONSENT = "no_consent_context_only"


class Session(NamedTuple):
    vec: np.ndarray | None
    age_s: float | None           # age of the vector by its ``updated_ms``
    degraded: bool                # the store could not be consulted
    reason: str = ""              # what the source says about it in ``route_reasons`` ("" : nothing)


NO_SESSION = Session(None, None, False)
DEGRADED = Session(None, None, True)


class SessionSource(Protocol):
    def cached(self, tenant: str, session_id: str) -> Session | None:
        """The session without awaiting, or None when ``fetch`` must be awaited."""
        ...

    async def fetch(self, tenant: str, session_id: str) -> Session: ...


class SessionStage:
    name = "session"
    suspends = True

    def __init__(self, source: SessionSource) -> None:
        self._source = source

    def run(self, ctx: RankCtx) -> object:
        req = ctx.req
        if not req.context.consent:
            ctx.reasons.append(NO_CONSENT)
            return None
        session = self._source.cached(req.tenant, req.session_id)
        if session is None:
            return SUSPEND
        _apply(ctx, session)
        return None

    async def complete(self, ctx: RankCtx) -> None:
        req = ctx.req
        _apply(ctx, await self._source.fetch(req.tenant, req.session_id))


def _apply(ctx: RankCtx, session: Session) -> None:
    ctx.vec = session.vec
    ctx.vec_age_s = session.age_s
    if session.degraded:
        ctx.degraded = True
    if session.reason:
        ctx.reasons.append(session.reason)
