"""The first two stages of every tier's request path: body bytes -> plain objects -> a validated request.

``Decode`` works on any ctx with ``body``, ``ctype`` and ``obj`` (the origin's and the ingest's too);
``Validate`` parses the ``/v1/recommend`` contract (``shared.contracts.api.parse_recommend``)."""

from __future__ import annotations

from typing import Any

from strata.shared.contracts.api import parse_recommend
from strata.shared.serving.codecs import decode


class Decode:
    """JSON or msgpack by ``Content-Type`` (400/415 name the field)."""

    name = "decode"

    def run(self, ctx: Any) -> None:
        ctx.obj = decode(ctx.body, ctx.ctype)


class Validate:
    """Plain objects -> ``RecommendRequest`` (422 names the field and the reason)."""

    name = "validate"

    def run(self, ctx: Any) -> None:
        ctx.req = parse_recommend(ctx.obj)
