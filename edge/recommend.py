"""``POST /v1/recommend`` as a declared pipeline of stages behind the ``shared.serving.pipeline.Handler`` protocol.

    exact_cache -> decode -> validate -> response_cache -> session -> candidates -> guardrails
    -> rank -> select -> confidence -> escalate -> encode

``try_now`` answers without awaiting whenever it can (a cache hit, a session in the PoP cache, or no
store); otherwise it returns a ``Pending`` suspended at the session stage, which ``finish`` completes
after the store read. Front doors (``edge.http``, ``edge.app``) know only this protocol; errors
are raised as ``StrataError`` and mapped to answers by ``shared.serving.error_mapper``.
"""

from __future__ import annotations

import time

import numpy as np

from strata.edge.model_slot import ModelSlot
from strata.edge.stages.candidates import Candidates
from strata.edge.stages.confidence import Confidence
from strata.edge.stages.ctx import RecommendCtx
from strata.edge.stages.decode import Decode
from strata.edge.stages.encode import Encode
from strata.edge.stages.escalate import Escalate
from strata.edge.stages.exact_cache import ExactCache
from strata.edge.stages.guardrails import GuardrailFilter
from strata.edge.stages.rank import Rank
from strata.edge.stages.response_cache import ResponseCacheStage
from strata.edge.stages.select import Select
from strata.edge.stages.session import SessionStage
from strata.edge.stages.validate import Validate
from strata.shared.contracts.api import RecommendRequest
from strata.shared.errors import NotReady
from strata.shared.serving.codecs import JSON, choose_response_type
from strata.shared.serving.pipeline import Pending, Pipeline, Reply

ROUTE = "/v1/recommend"


class RecommendHandler:
    route = ROUTE

    def __init__(self, slot: ModelSlot, *, exact_cache: ExactCache, response_cache: ResponseCacheStage,
                 session: SessionStage, guardrails: GuardrailFilter, confidence: Confidence,
                 encode: Encode, escalate: Escalate | None = None) -> None:
        self.slot = slot
        ranking = [Candidates(), guardrails, Rank(), Select(), confidence]
        self.pipeline = Pipeline([exact_cache, Decode(), Validate(), response_cache, session,
                                  *ranking, escalate or Escalate(), encode])
        self._ranking = tuple(ranking)

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None) -> Reply | Pending:
        t0 = time.perf_counter_ns()
        live = self.slot.current
        if live is None:
            raise NotReady("no model loaded yet", field="model")
        return self.pipeline.run(RecommendCtx(t0, body, ctype, accept, choose_response_type(accept, ctype), live))

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)

    def decide(self, req: RecommendRequest, vec: np.ndarray | None = None,
               vec_age_s: float | None = None) -> RecommendCtx:
        """The ranking stages alone (candidates .. confidence) on a parsed request: no caches, no codec.

        What ``strata bench edge`` times in-process, and what tests inspect."""
        live = self.slot.current
        if live is None:
            raise NotReady("no model loaded yet", field="model")
        ctx = RecommendCtx(time.perf_counter_ns(), b"", None, None, JSON, live)
        ctx.req = req
        ctx.vec = vec
        ctx.vec_age_s = vec_age_s
        for stage in self._ranking:
            stage.run(ctx)
        return ctx

