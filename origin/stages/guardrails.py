"""Banned items and categories, and the age gate (``shared.ranking.guardrails.CatalogGuard``): kept and removed,
with the reason, counted per reason in the answer.

This stage never fails open: if the guard cannot run (a policy that cannot compile, a catalog it cannot
read), the request is blocked with 503 and the reason, never answered with unchecked items.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from strata.origin.errors import GuardrailUnavailable
from strata.origin.stages.ctx import OriginCtx
from strata.shared.ranking.guardrails import REASONS

logger = logging.getLogger(__name__)


class GuardrailFilter:
    name = "guardrails"

    def __init__(self, on_removed: Callable[[str, int], None] | None = None) -> None:
        self.on_removed = on_removed

    def run(self, ctx: OriginCtx) -> None:
        rows = np.fromiter(ctx.sources.keys(), dtype=np.int64, count=len(ctx.sources))
        try:
            res = ctx.state.guard.filter(rows, ctx.oreq.req.context.age_verified)
        except Exception as exc:
            logger.error("guardrail stage failed; blocking the answer", exc_info=exc)
            raise GuardrailUnavailable(f"guardrails could not run ({type(exc).__name__}: {exc}); "
                                       "no unchecked items are served", field="guardrails") from exc
        ctx.rows = rows[res.kept]
        for code in res.reason_codes.tolist():
            reason = REASONS[code]
            ctx.removed[reason] += 1
            if self.on_removed is not None:
                self.on_removed(reason, 1)
