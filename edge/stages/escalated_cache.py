"""An upper tier's answer to the same request of the same session, kept by the router (``edge.escalated_answers``):
served again without asking (``timing.cache`` = ``hit``, ``tier`` = the tier that answered)."""

from __future__ import annotations

from collections.abc import Callable

from strata.edge.escalated_answers import EscalatedAnswers
from strata.edge.stages.ctx import EdgeCtx
from strata.shared.serving.pipeline import ANSWERED


class EscalatedCacheStage:
    name = "escalated_cache"

    def __init__(self, answers: EscalatedAnswers, on_hit: Callable[[str], None]) -> None:
        self.answers = answers
        self.on_hit = on_hit        # the tier whose answer was served again (the router counts it)

    def run(self, ctx: EdgeCtx) -> object:
        up = self.answers.get(ctx.key)      # the response cache stage built the key
        if up is None:
            return None
        ctx.upstream = up
        ctx.cache = "hit"
        self.on_hit(up.tier)
        return ANSWERED
