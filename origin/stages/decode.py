"""Body bytes -> plain objects, JSON or msgpack by ``Content-Type`` (400/415 name the field)."""

from __future__ import annotations

from origin.stages.ctx import OriginCtx
from shared.codecs import decode


class Decode:
    name = "decode"

    def run(self, ctx: OriginCtx) -> None:
        ctx.obj = decode(ctx.body, ctx.ctype)
