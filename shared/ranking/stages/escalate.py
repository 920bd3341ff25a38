"""The router's seam: escalate to an upper tier, keeping this tier's answer as the fallback.

Every tier computes its own answer first (cheap), ``Route`` says where the request should go, and this
stage asks that tier when it is above this one and an ``UpstreamClient`` is configured (the router). The
client decides admission (escalation budget, open breakers) and the deadline; on success the answer to
serve is ``ctx.upstream`` (``Encode`` renders it with that tier's name and never caches it under this
tier's key); on a refusal or a failure this tier's answer stands, ``degraded`` when the upper tier was
asked and failed, with the reason in ``route_reasons``. Without a client the stage never suspends.
"""

from __future__ import annotations

import time
from typing import Protocol

from strata.shared.contracts.api import TIERS
from strata.shared.ranking.stages.ctx import RankCtx, Upstream
from strata.shared.serving.pipeline import SUSPEND

LEVEL = {tier: i for i, tier in enumerate(TIERS)}


class EscalationFailed(Exception):
    """The upper tier did not answer usefully; ``reason`` goes into ``route_reasons`` (``streaming_timeout``,
    ``origin_unavailable`` ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamClient(Protocol):
    def admit(self, target: str, ctx: RankCtx) -> tuple[str | None, float]:
        """(None, deadline in seconds) to escalate now, or (a reason to answer here, 0.0) (e.g. ``escalation_budget``)."""
        ...

    async def ask(self, target: str, ctx: RankCtx) -> Upstream:
        """The upper tier's answer by ``ctx.deadline_ns``, or ``EscalationFailed``."""
        ...


class Escalate:
    name = "escalate"
    suspends = True

    def __init__(self, tier: str, client: UpstreamClient | None = None) -> None:
        if tier not in LEVEL:
            raise ValueError(f"tier must be one of {list(TIERS)}, got {tier!r}")
        self.tier = tier
        self.level = LEVEL[tier]
        self.client = client

    def run(self, ctx: RankCtx) -> object:
        client = self.client
        if client is None or LEVEL[ctx.route_tier] <= self.level:
            return None
        refused, deadline_s = client.admit(ctx.route_tier, ctx)
        if refused is not None:
            ctx.route_reasons.append(refused)
            return None
        ctx.deadline_ns = time.perf_counter_ns() + int(deadline_s * 1e9)
        return SUSPEND

    async def complete(self, ctx: RankCtx) -> None:
        try:
            ctx.upstream = await self.client.ask(ctx.route_tier, ctx)    # type: ignore[union-attr]  (run checked it)
        except EscalationFailed as exc:
            ctx.degraded = True
            ctx.route_reasons.append(exc.reason)
