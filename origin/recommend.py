"""``POST /v1/recommend`` and ``POST /v1/explain`` as declared pipelines behind the ``Handler`` protocol.

    recommend: decode -> validate -> profile -> given_items -> content_source -> covisitation_source -> two_tower_source
               -> ann_source -> popular_source -> guardrails -> in_stock -> already_purchased -> rank -> mmr -> select
               -> encode
    explain:   decode -> validate -> profile -> given_items -> content_source -> covisitation_source
               -> two_tower_source -> ann_source -> popular_source -> guardrails -> in_stock -> already_purchased -> rank
               -> mmr -> select -> reason -> encode

Front doors (``origin.app``) know only this protocol; errors are ``StrataError`` mapped by
``shared.serving.error_mapper``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from strata.origin.stages.ann_source import AnnSource
from strata.origin.stages.content_source import ContentSource
from strata.origin.stages.covisit_source import CovisitationSource
from strata.origin.stages.ctx import OriginCtx
from strata.origin.stages.encode import Encode
from strata.origin.stages.given_items import GivenItems
from strata.origin.stages.guardrails import GuardrailFilter
from strata.origin.stages.in_stock import InStockFilter
from strata.origin.stages.mmr import MmrSelector
from strata.origin.stages.popular_source import PopularSource
from strata.origin.stages.profile import ProfileStage
from strata.origin.stages.purchased import AlreadyPurchasedFilter
from strata.origin.stages.rank import Rank
from strata.origin.stages.reason import ReasonStage
from strata.origin.stages.select import Select
from strata.origin.stages.two_tower_source import TwoTowerSource
from strata.origin.stages.validate import Validate
from strata.origin.state import OriginState
from strata.shared.auth.gate import Caller
from strata.shared.errors import NotReady
from strata.shared.serving.codecs import choose_response_type
from strata.shared.serving.pipeline import Pending, Pipeline, Reply, Stage
from strata.shared.serving.request_stages import Decode


class Ranking:
    """The stages shared by both routes, built once (their counters are the node's metrics)."""

    def __init__(self, profile: ProfileStage, ann: AnnSource, guardrails: GuardrailFilter, rank: Rank,
                 mmr: MmrSelector, select: Select, content: ContentSource | None = None,
                 popular: PopularSource | None = None, covisitation: CovisitationSource | None = None,
                 purchased: AlreadyPurchasedFilter | None = None, two_tower: TwoTowerSource | None = None) -> None:
        self.profile = profile
        self.sources: list[Stage] = [content or ContentSource(), covisitation or CovisitationSource(),
                                     two_tower or TwoTowerSource(), ann, popular or PopularSource()]
        self.filters: list[Stage] = [guardrails, InStockFilter(), purchased or AlreadyPurchasedFilter()]
        self.scoring: list[Stage] = [rank, mmr, select]


class OriginHandler:
    def __init__(self, route: str, state: Callable[[], OriginState | None], stages: list[Stage],
                 explain: bool) -> None:
        self.route = route
        self._state = state
        self.explain = explain
        self.pipeline = Pipeline(stages)

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None,
                caller: Caller | None = None) -> Reply | Pending:
        t0 = time.perf_counter_ns()
        state = self._state()
        if state is None:
            raise NotReady("no model loaded yet", field="model")
        ctx = OriginCtx(t0, body, ctype, accept, choose_response_type(accept, ctype), state, self.explain)
        ctx.caller = caller
        return self.pipeline.run(ctx)

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)


def recommend_handler(state: Callable[[], OriginState | None], r: Ranking, encode: Encode) -> OriginHandler:
    stages = [Decode(), Validate(), r.profile, GivenItems(), *r.sources, *r.filters, *r.scoring, encode]
    return OriginHandler("/v1/recommend", state, stages, explain=False)


def explain_handler(state: Callable[[], OriginState | None], r: Ranking, reason: ReasonStage,
                    encode: Encode) -> OriginHandler:
    stages = [Decode(), Validate(), r.profile, GivenItems(), *r.sources, *r.filters, *r.scoring, reason, encode]
    return OriginHandler("/v1/explain", state, stages, explain=True)
