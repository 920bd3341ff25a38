"""The state one ranking request carries through the kernel's stages. Slots only: it is built once per
request. Every slot is annotated; a stage reads only what an earlier stage wrote (the comment says which).
Tiers subclass it for their own stages' fields (``edge.stages.ctx.EdgeCtx``, ``streaming.tier2.stages``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import numpy as np

from strata.shared.contracts.api import RecommendRequest
from strata.shared.ranking.confidence import Signals
from strata.shared.ranking.model import RankingModel

if TYPE_CHECKING:
    from strata.shared.auth.gate import Caller
    from strata.shared.serving.answers import Answer


class CountSource(Protocol):
    """A slot's clicks, impressions and expected clicks for candidate rows (``shared.online_store.codecs``:
    ``SlotCounts`` at the edge, ``ItemCounts`` read from the store at tier 2)."""

    def of(self, rows: np.ndarray, n_unknown: int,
           ids: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None: ...


class NoCounts:
    """No observations (the prior alone)."""

    __slots__ = ()

    def of(self, rows: np.ndarray, n_unknown: int, ids: Sequence[str] | None) -> None:
        return None


NO_COUNTS = NoCounts()


class Upstream(NamedTuple):
    """An answer another tier gave to this request (the router's ``Escalate`` stage fills it)."""

    tier: str                   # who answered: "streaming" | "origin"
    body: dict[str, Any]        # the decoded answer (the ``/v1/recommend`` contract)
    degraded: bool              # that tier said degraded


class RankCtx:
    __slots__ = (
        "t0", "body", "ctype", "accept", "media", "model", "caller",     # arrival
        "obj", "req",                                                    # decode, validate
        "vec", "vec_age_s", "degraded", "reasons",                       # session (+ any stage: reasons)
        "ids", "pos", "rows", "n_given", "n_unknown", "unknown_candidates", "channel_pool",  # candidates
        "removed",                                                       # guardrails
        "counts",                                                        # the tier's counts stage
        "alpha", "beta", "strength", "imps", "n_known", "theta", "mean", "prior",  # posterior
        "picked", "flags", "picked_cats", "margin", "items", "explored", "target",   # select
        "filled", "fill_post", "relaxed",                                # fill
        "signals", "confidence", "route_tier", "route_reasons",          # confidence, route
        "upstream", "deadline_ns", "escalation", "request_id", "traceparent",   # escalate
        "answer", "cache",                                               # a cached answer (encode renders it)
    )

    # arrival (the tier's handler)
    t0: int                         # perf_counter_ns at arrival
    body: bytes
    ctype: bytes | None
    accept: bytes | None
    media: str                      # the answer's codec
    model: RankingModel
    caller: Caller | None           # who the front door's gate admitted (None: auth off): the tenant
    # decode, validate
    obj: object
    req: RecommendRequest
    # session: the session vector only with consent (``stages.session``)
    vec: np.ndarray | None
    vec_age_s: float | None
    degraded: bool                  # a dependency failed and a fallback answered
    reasons: list[str]              # what happened on the way (stages append; the answer's route_reasons start here)
    # candidates: the request's ids or a pool
    ids: list[str] | None           # candidate ids (None: the rows are a pool; names come from the bundle)
    pos: np.ndarray | None          # positions into ``ids`` of ``rows`` when guardrails removed known ids
    rows: np.ndarray                # bundle row per candidate (-1: unknown to the bundle)
    n_given: int                    # distinct candidates the caller named (0: none given)
    n_unknown: int                  # rows that are -1
    unknown_candidates: int         # given ids the bundle does not know (before guardrails)
    channel_pool: bool              # rows are the channel's pool (nothing to fill from)
    # guardrails
    removed: int
    # counts
    counts: CountSource
    # posterior
    alpha: np.ndarray
    beta: np.ndarray
    strength: np.ndarray            # alpha + beta: the posterior's concentration per candidate
    imps: np.ndarray | None
    n_known: int
    theta: np.ndarray               # one Thompson draw per candidate
    mean: np.ndarray                # posterior mean per candidate
    prior: np.ndarray               # the scorer's click probability per candidate (impression events carry it)
    # select
    picked: np.ndarray              # positions into rows, in answer order
    flags: list[bool]               # explored, per picked position
    picked_cats: list[int] | None   # category code per picked position (None: not needed so far)
    margin: float
    items: list[dict[str, Any]]     # the answer's items: item_id, score, explored
    explored: int
    target: int                     # how many items the answer should hold
    # fill
    filled: int                     # items appended from the pool
    fill_post: tuple[np.ndarray, np.ndarray, np.ndarray] | None   # (alpha, beta, prior) of the filled items
    relaxed: bool                   # the diversity cap was relaxed to reach ``target``
    # confidence, route
    signals: Signals
    confidence: float
    route_tier: str
    route_reasons: list[str]
    # escalate (the router)
    upstream: Upstream | None       # another tier's answer to serve instead of this one
    deadline_ns: int | None         # perf_counter_ns by which an escalation must have answered
    escalation: str | None          # None (not asked), "answered", "failed", "refused", "background"
    request_id: str | None          # the id sent upstream (the answer's request_id too); None: not escalated
    traceparent: str | None         # the W3C traceparent sent upstream
    # a tier's response cache
    answer: Answer | None           # set by a cache hit: encode renders it instead of ranking's result
    cache: str                      # "hit" | "miss" (the answer's timing.cache)

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, accept: bytes | None, media: str,
                 model: RankingModel) -> None:
        self.t0 = t0
        self.body = body
        self.ctype = ctype
        self.accept = accept
        self.media = media
        self.model = model
        self.caller = None
        self.vec = None
        self.vec_age_s = None
        self.degraded = False
        self.reasons = []
        self.counts = NO_COUNTS
        self.fill_post = None
        self.filled = 0
        self.relaxed = False
        self.upstream = None
        self.deadline_ns = None
        self.escalation = None
        self.request_id = None
        self.traceparent = None
        self.answer = None
        self.cache = "miss"

    def candidate_names(self) -> list[str]:
        """The item id of every candidate row (after the guardrails), in row order."""
        if self.ids is None:
            item_ids = self.model.bundle.item_ids
            return [item_ids[r] for r in self.rows.tolist()]
        if self.pos is not None:
            ids = self.ids
            return [ids[i] for i in self.pos.tolist()]
        return self.ids


# A tier's own ctx (``EdgeCtx``, ``Tier2Ctx``): stages that hand the ctx to a tier's callback are generic in it.
TierCtx = TypeVar("TierCtx", bound=RankCtx)
