"""Body bytes -> plain objects, JSON or msgpack by ``Content-Type`` (400/415 name the field)."""

from __future__ import annotations

from strata.origin.stages.ctx import OriginCtx
from strata.shared.serving.codecs import decode


class Decode:
    name = "decode"

    def run(self, ctx: OriginCtx) -> None:
        ctx.obj = decode(ctx.body, ctx.ctype)
