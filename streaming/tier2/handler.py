"""``POST /v1/recommend`` of tier 2 as a declared pipeline behind the ``shared.serving.pipeline.Handler`` protocol."""

from __future__ import annotations

import time
from collections.abc import Callable

from strata.shared.errors import NotReady
from strata.shared.serving.codecs import choose_response_type
from strata.shared.serving.pipeline import Pending, Pipeline, Reply
from strata.streaming.tier2.model import Tier2Model
from strata.streaming.tier2.stages import (
    Candidates,
    Counts,
    Decode,
    Encode,
    GuardrailFilter,
    RankSelect,
    SessionStage,
    Tier2Ctx,
    Validate,
)

ROUTE = "/v1/recommend"


class Tier2Handler:
    route = ROUTE

    def __init__(self, model: Callable[[], Tier2Model | None], *, session: SessionStage, candidates: Candidates,
                 guardrails: GuardrailFilter, counts: Counts, rank_select: RankSelect, encode: Encode) -> None:
        self.model = model
        self.pipeline = Pipeline([Decode(), Validate(), session, candidates, guardrails, counts, rank_select, encode])

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None) -> Reply | Pending:
        t0 = time.perf_counter_ns()
        model = self.model()
        if model is None:
            raise NotReady("no model loaded yet", field="model")
        return self.pipeline.run(Tier2Ctx(t0, body, ctype, choose_response_type(accept, ctype), model))

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)
