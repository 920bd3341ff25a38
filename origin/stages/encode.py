"""The answer in the negotiated codec: items, tier, degraded, route reasons, removals by reason, ids (the
impression id signed over tenant, session, shown items and time when a ``signer`` is configured)."""

from __future__ import annotations

import time
from collections.abc import Callable

from strata.origin.stages.ctx import OriginCtx
from strata.shared.auth.impressions import ImpressionSigner
from strata.shared.contracts.origin import origin_answer
from strata.shared.serving.codecs import encode
from strata.shared.serving.pipeline import Reply


class Encode:
    name = "encode"

    def __init__(self, next_id: Callable[[], str], on_answer: Callable[[OriginCtx], None] | None = None,
                 signer: ImpressionSigner | None = None) -> None:
        self.next_id = next_id
        self.on_answer = on_answer
        self.signer = signer

    def run(self, ctx: OriginCtx) -> Reply:
        state = ctx.state
        ids = state.catalog.item_ids
        ex = ctx.explanation
        if ctx.explain:
            items = ex.items
        else:
            scores = dict(zip(ctx.rows.tolist(), ctx.scores.tolist(), strict=True))
            items = [{"item_id": ids[r], "score": round(scores[r], 6), "explored": e, "sources": ctx.sources[r]}
                     for r, e in zip(ctx.picked.tolist(), ctx.explored, strict=True)]
        req = ctx.oreq.req
        impression_id = self.next_id() if self.signer is None else \
            self.signer.sign(req.tenant, req.session_id, [it["item_id"] for it in items], int(time.time() * 1000))
        body = origin_answer(items=items, degraded=ctx.degraded, route_reasons=ctx.route_reasons,
                             model_version=state.version, removed=dict(ctx.removed), request_id=self.next_id(),
                             impression_id=impression_id, server_us=(time.perf_counter_ns() - ctx.t0) // 1000,
                             reasoner=ex.reasoner if ctx.explain else None,
                             fallback=ex.fallback if ctx.explain else None)
        if self.on_answer is not None:
            self.on_answer(ctx)
        return Reply(200, ctx.media, encode(body, ctx.media))
