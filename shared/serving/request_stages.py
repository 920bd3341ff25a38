"""The first two stages of every tier's request path: body bytes -> plain objects -> a validated request.

``Decode`` works on any ctx with ``body``, ``ctype`` and ``obj`` (the origin's and the ingest's too);
``Validate`` parses the ``/v1/recommend`` contract (``shared.contracts.api.parse_recommend``) after binding the
caller's tenant (``shared.auth.gate.bind_tenant``: a body naming another tenant is 403)."""

from __future__ import annotations

from typing import Any

from strata.shared.auth.gate import bind_tenant
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
        if ctx.caller is not None:
            bind_tenant(ctx.obj, ctx.caller)
        ctx.req = parse_recommend(ctx.obj)
