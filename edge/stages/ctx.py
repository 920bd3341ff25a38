"""The state one request carries through the stages. Slots only: it is built once per request."""

from __future__ import annotations

import numpy as np

from strata.edge.answers import Answer
from strata.edge.model_slot import LiveModel
from strata.shared.contracts.api import RecommendRequest


class RecommendCtx:
    """Fields are filled by the stages in order; a stage reads only what an earlier stage wrote."""

    __slots__ = (
        "t0", "body", "ctype", "accept", "media", "live",            # arrival (RecommendHandler)
        "exact_key", "obj", "req", "key", "answer", "cache",         # caches, decode, validate
        "vec", "vec_age_s", "degraded",                              # session
        "ids", "pos", "rows", "n_given", "n_unknown", "unknown_candidates", "channel_pool", "removed",  # candidates, guardrails
        "alpha", "beta", "imps", "n_known", "theta", "mean",         # rank
        "items", "explored", "margin", "concentration", "filled",    # select
        "picked", "fill_post",                                       # select: what the impression log reads
        "confidence", "route_tier", "route_reasons",                 # confidence
    )

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, accept: bytes | None, media: str,
                 live: LiveModel) -> None:
        self.t0 = t0
        self.body = body
        self.ctype = ctype
        self.accept = accept
        self.media = media
        self.live = live
        self.answer: Answer | None = None
        self.cache = "miss"
        self.exact_key: tuple | None = None
        self.degraded = False
        self.req: RecommendRequest | None = None      # stays None on an exact-body cache hit
        self.fill_post = None

    # typed views for readers (set by the stages)
    rows: np.ndarray
