"""The edge's per-request state: the kernel's ``RankCtx`` plus its cache keys."""

from __future__ import annotations

from strata.shared.ranking.stages.ctx import RankCtx


class EdgeCtx(RankCtx):
    __slots__ = ("exact_key", "key")

    exact_key: tuple | None         # exact-body cache key (None: that cache is off)
    key: tuple                      # semantic response-cache key (response_cache stage)

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, accept: bytes | None, media: str, model) -> None:
        super().__init__(t0, body, ctype, accept, media, model)
        self.exact_key = None
