"""The edge's per-request state: the kernel's ``RankCtx`` plus its cache keys."""

from __future__ import annotations

from strata.edge.model_slot import LiveModel
from strata.shared.ranking.stages.ctx import RankCtx


class EdgeCtx(RankCtx):
    __slots__ = ("exact_key", "key")

    model: LiveModel                # the kernel's model plus the PoP's slot counts (``edge.model_slot``)
    exact_key: tuple | None         # exact-body cache key (None: that cache is off)
    key: tuple                      # semantic response-cache key (response_cache stage)

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, accept: bytes | None, media: str,
                 model: LiveModel) -> None:
        super().__init__(t0, body, ctype, accept, media, model)
        self.exact_key = None
