"""The router's seam: escalate to an upper tier, keeping this tier's answer as the fallback.

Every tier computes its own answer first (cheap), ``Route`` says where the request should go, and this
stage asks that tier when it is above this one and an ``UpstreamClient`` is configured (the router,
``shared.router``). The client decides admission (escalation budget, open breakers) and the deadline; on
success the answer to serve is ``ctx.upstream`` (``Encode`` renders it with that tier's name and never caches
it under this tier's key) and ``remember`` may keep it for the session's next request. On a refusal
(``escalation_budget``, an open breaker) or a failure (``origin_timeout`` ...) this tier's answer stands,
``degraded``, with the reason in ``route_reasons``. A tier the router has no URLs for is not escalated to:
this tier's answer is the answer, not degraded. ``background``: answer at once with this tier's answer
and fetch the upper tier's for the session's next request (``explain`` is always asked synchronously).
Without a client the stage never suspends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from strata.shared.contracts.api import TIERS
from strata.shared.ranking.stages.ctx import RankCtx, Upstream
from strata.shared.serving.pipeline import SUSPEND

LEVEL = {tier: i for i, tier in enumerate(TIERS)}
BACKGROUND = "escalated_in_background"      # route_reasons: the upper tier's answer is for the next request
Remember = Callable[[RankCtx, Upstream], None]


class EscalationFailed(Exception):
    """The upper tier did not answer usefully; ``reason`` goes into ``route_reasons`` (``streaming_timeout``,
    ``origin_unavailable`` ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamClient(Protocol):
    def seen(self) -> None:
        """A request this tier answers itself without asking (the admission window's denominator)."""
        ...

    def admit(self, target: str, ctx: RankCtx) -> tuple[str | None, float]:
        """(None, deadline in seconds) to escalate now; or (a reason, 0.0) to answer here, degraded
        (``escalation_budget``, ``origin_unavailable``); or ("", 0.0): that tier is not configured."""
        ...

    async def ask(self, target: str, ctx: RankCtx) -> Upstream:
        """The upper tier's answer by ``ctx.deadline_ns``, or ``EscalationFailed``."""
        ...

    def fetch(self, target: str, ctx: RankCtx, remember: Remember | None) -> None:
        """Ask in the background; hand the answer to ``remember``."""
        ...


class Escalate:
    name = "escalate"
    suspends = True

    def __init__(self, tier: str, client: UpstreamClient | None = None, *, background: bool = False,
                 remember: Remember | None = None) -> None:
        if tier not in LEVEL:
            raise ValueError(f"tier must be one of {list(TIERS)}, got {tier!r}")
        self.tier = tier
        self.level = LEVEL[tier]
        self.client = client
        self.background = background
        self.remember = remember        # keeps an upper tier's answer for the session's next request

    def run(self, ctx: RankCtx) -> object:
        client = self.client
        if client is None:
            return None
        target = ctx.route_tier
        if LEVEL[target] <= self.level:
            client.seen()
            return None
        refused, deadline_s = client.admit(target, ctx)
        if refused is not None:
            if refused:
                ctx.escalation = "refused"
                ctx.degraded = True
                ctx.route_reasons.append(refused)
            return None
        ctx.deadline_ns = time.perf_counter_ns() + int(deadline_s * 1e9)
        if self.background and not ctx.req.explain:
            ctx.escalation = "background"
            ctx.route_reasons.append(BACKGROUND)
            remember = self.remember
            client.fetch(target, ctx, None if remember is None else lambda c, up: remember(c, routed(c, up)))
            return None
        return SUSPEND

    async def complete(self, ctx: RankCtx) -> None:
        try:
            up = await self.client.ask(ctx.route_tier, ctx)    # type: ignore[union-attr]  (run checked it)
        except EscalationFailed as exc:
            ctx.escalation = "failed"
            ctx.degraded = True
            ctx.route_reasons.append(exc.reason)
            return
        ctx.escalation = "answered"
        ctx.upstream = up = routed(ctx, up)
        if self.remember is not None:
            self.remember(ctx, up)


def routed(ctx: RankCtx, up: Upstream) -> Upstream:
    """The upper tier's answer saying where this tier sent it (``route_tier``) and why, then what the upper tier
    added to ``route_reasons``."""
    theirs = up.body.get("route_reasons") or []
    reasons = list(dict.fromkeys([*ctx.route_reasons, *theirs])) if theirs else ctx.route_reasons
    return Upstream(up.tier, {**up.body, "route_tier": ctx.route_tier, "route_reasons": reasons}, up.degraded)
