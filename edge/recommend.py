"""``POST /v1/recommend`` at the edge: the ranking kernel (``shared.ranking.stages``) composed with the PoP's
caches, behind the ``shared.serving.pipeline.Handler`` protocol.

    exact_cache -> decode -> validate -> response_cache [-> escalated_cache] -> session -> candidates
    -> guardrails -> counts -> posterior -> select -> fill -> confidence -> route -> escalate -> encode

Edge-only stages: the exact-body and semantic response caches (``edge.stages``), the session from the PoP
cache (``edge.session_source``, behind the kernel's consent-gated session stage) and the slot counts the
PoP keeps (``edge.stages.counts``); with a router, the upper tiers' answers kept per session
(``edge.stages.escalated_cache``). ``try_now`` answers without awaiting whenever it can (a cache hit, a
session in the PoP cache, or no store); otherwise it returns a ``Pending`` suspended at the session stage,
which ``finish`` completes after the store read. Front doors know only this protocol; errors are raised as
``StrataError`` and mapped to answers by ``shared.serving.error_mapper``.
"""

from __future__ import annotations

import time

import numpy as np

from strata.edge.model_slot import ModelSlot
from strata.edge.session_source import PopSessions
from strata.edge.stages.counts import PopCounts
from strata.edge.stages.ctx import EdgeCtx
from strata.edge.stages.escalated_cache import EscalatedCacheStage
from strata.edge.stages.exact_cache import ExactCache
from strata.edge.stages.response_cache import ResponseCacheStage
from strata.shared.auth.gate import Caller
from strata.shared.contracts.api import RecommendRequest
from strata.shared.errors import NotReady
from strata.shared.ranking.confidence import ConfidenceConfig
from strata.shared.ranking.stages.candidates import GivenCandidates
from strata.shared.ranking.stages.confidence import ConfidenceStage
from strata.shared.ranking.stages.escalate import Escalate
from strata.shared.ranking.stages.fill import Fill
from strata.shared.ranking.stages.guardrail_filter import GuardrailFilter
from strata.shared.ranking.stages.posterior import PosteriorStage
from strata.shared.ranking.stages.route import Route
from strata.shared.ranking.stages.select import ThompsonSelect
from strata.shared.ranking.stages.session import SessionStage
from strata.shared.serving.codecs import JSON, choose_response_type
from strata.shared.serving.encode import Encode
from strata.shared.serving.pipeline import Pending, Pipeline, Reply
from strata.shared.serving.request_stages import Decode, Validate

ROUTE = "/v1/recommend"
TIER = "edge"


class RecommendHandler:
    route = ROUTE

    def __init__(self, slot: ModelSlot, *, exact_cache: ExactCache, response_cache: ResponseCacheStage,
                 sessions: PopSessions, guardrails: GuardrailFilter, confidence: ConfidenceConfig,
                 encode: Encode, escalate: Escalate | None = None,
                 escalated_cache: EscalatedCacheStage | None = None) -> None:
        self.slot = slot
        ranking = [GivenCandidates(), guardrails, PopCounts(), PosteriorStage(), ThompsonSelect(), Fill(),
                   ConfidenceStage(confidence), Route(confidence)]
        caches = [response_cache] if escalated_cache is None else [response_cache, escalated_cache]
        self.pipeline = Pipeline([exact_cache, Decode(), Validate(), *caches, SessionStage(sessions),
                                  *ranking, escalate or Escalate(TIER), encode])
        self._ranking = tuple(ranking)

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None,
                caller: Caller | None = None) -> Reply | Pending:
        t0 = time.perf_counter_ns()
        live = self.slot.current
        if live is None:
            raise NotReady("no model loaded yet", field="model")
        ctx = EdgeCtx(t0, body, ctype, accept, choose_response_type(accept, ctype), live)
        if caller is not None:
            ctx.caller = caller
        return self.pipeline.run(ctx)

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)

    def decide(self, req: RecommendRequest, vec: np.ndarray | None = None,
               vec_age_s: float | None = None) -> EdgeCtx:
        """The ranking stages alone (candidates .. route) on a parsed request: no caches, no codec, no session
        read (``vec`` stands for the session's vector). What ``strata bench edge`` times in-process, and what
        tests inspect."""
        live = self.slot.current
        if live is None:
            raise NotReady("no model loaded yet", field="model")
        ctx = EdgeCtx(time.perf_counter_ns(), b"", None, None, JSON, live)
        ctx.req = req
        ctx.vec = vec
        ctx.vec_age_s = vec_age_s
        for stage in self._ranking:
            stage.run(ctx)
        return ctx
