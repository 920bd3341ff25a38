"""Body bytes -> plain objects, JSON or msgpack by ``Content-Type`` (400/415 name the field)."""

from __future__ import annotations

from strata.edge.stages.ctx import RecommendCtx
from strata.shared.serving.codecs import decode


class Decode:
    name = "decode"

    def run(self, ctx: RecommendCtx) -> None:
        ctx.obj = decode(ctx.body, ctx.ctype)
