"""``POST /v1/recommend`` of tier 2: the ranking kernel (``shared.ranking.stages``) composed with a store-direct
session, ANN candidates and counts read from the store, behind the ``shared.serving.pipeline.Handler``
protocol.

    decode -> validate -> session -> candidates -> ann -> guardrails -> counts -> posterior -> select
    -> pool_counts -> fill -> confidence -> route -> escalate -> encode
"""

from __future__ import annotations

import time
from collections.abc import Callable

from strata.shared.auth.gate import Caller
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
from strata.shared.serving.codecs import choose_response_type
from strata.shared.serving.encode import Encode
from strata.shared.serving.pipeline import Pending, Pipeline, Reply
from strata.shared.serving.request_stages import Decode, Validate
from strata.streaming.tier2.model import Tier2Model
from strata.streaming.tier2.stages import AnnCandidates, PoolCounts, StoreCounts, StoreSessions, Tier2Ctx
from strata.streaming.tier2.store import Tier2Store

ROUTE = "/v1/recommend"
TIER = "streaming"


class Tier2Handler:
    route = ROUTE

    def __init__(self, model: Callable[[], Tier2Model | None], store: Tier2Store, *, candidates: AnnCandidates,
                 guardrails: GuardrailFilter, confidence: ConfidenceConfig, encode: Encode,
                 escalate: Escalate | None = None) -> None:
        self.model = model
        self.pipeline = Pipeline([
            Decode(), Validate(), SessionStage(StoreSessions(store)), GivenCandidates(), candidates, guardrails,
            StoreCounts(store), PosteriorStage(), ThompsonSelect(), PoolCounts(store), Fill(),
            ConfidenceStage(confidence), Route(confidence), escalate or Escalate(TIER), encode])

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None,
                caller: Caller | None = None) -> Reply | Pending:
        t0 = time.perf_counter_ns()
        model = self.model()
        if model is None:
            raise NotReady("no model loaded yet", field="model")
        ctx = Tier2Ctx(t0, body, ctype, accept, choose_response_type(accept, ctype), model)
        ctx.caller = caller
        return self.pipeline.run(ctx)

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)
