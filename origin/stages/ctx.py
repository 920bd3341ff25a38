"""The state one origin request carries through the stages; a stage reads only what earlier stages wrote."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from strata.origin.profiles import EMPTY, Profile
from strata.origin.state import OriginState
from strata.shared.contracts.origin import OriginRequest

if TYPE_CHECKING:
    from strata.origin.reasoner.base import Explanation
    from strata.shared.auth.gate import Caller
    from strata.shared.models.ranker_features import Histories, HistorySummary


class OriginCtx:
    __slots__ = (
        "t0", "body", "ctype", "accept", "media", "state", "explain", "caller", "given",
        "obj", "oreq", "profile", "query_words", "query_vec", "seeds",
        "sources", "retrieval", "query_match", "rows", "removed", "degraded", "route_reasons",
        "scores", "order", "picked", "explored", "explanation", "history", "summary", "user_vec",
    )

    # arrival (``origin.recommend.OriginHandler``)
    t0: int                         # perf_counter_ns at arrival
    body: bytes
    ctype: bytes | None
    accept: bytes | None
    media: str                      # the answer's codec
    state: OriginState
    explain: bool                   # the /v1/explain route
    caller: Caller | None           # who the gate admitted (None: auth off): the tenant
    # decode, validate, profile
    obj: object
    oreq: OriginRequest
    profile: Profile
    query_words: list[str]
    # sources
    given: bool                     # the candidates are the request's (item_ids, candidates)
    query_vec: np.ndarray | None    # the query's text vector (content source)
    seeds: list[int]                # rows the query found best (co-visitation expands them)
    sources: dict[int, list[str]]   # catalog row -> names of the sources that found it
    retrieval: dict[int, float]     # catalog row -> best source score in [0, 1]
    query_match: dict[int, float]   # catalog row -> share of the query's words it matches
    history: Histories | None       # the user's Histories for the models (two-tower source)
    summary: HistorySummary | None  # its HistorySummary (the ranker's repeat features; with ``history``)
    user_vec: np.ndarray | None     # the user tower's vector (with ``history``)
    # filters
    rows: np.ndarray                # catalog rows of the candidates left
    removed: Counter[str]           # reason -> items removed by the filters
    degraded: bool
    route_reasons: list[str]
    # rank, mmr, select
    scores: np.ndarray              # one score per row
    order: np.ndarray               # positions into ``rows``, best first
    picked: np.ndarray              # rows of the answer, in answer order
    explored: list[bool]            # per picked row
    # reason (the explain route only)
    explanation: Explanation | None

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, accept: bytes | None, media: str,
                 state: OriginState, explain: bool = False) -> None:
        self.t0 = t0
        self.body = body
        self.ctype = ctype
        self.accept = accept
        self.media = media
        self.state = state
        self.explain = explain
        self.caller = None
        self.given = False
        self.profile = EMPTY
        self.query_words = []
        self.query_vec = None
        self.seeds = []
        self.sources = {}
        self.retrieval = {}
        self.query_match = {}
        self.removed = Counter()
        self.degraded = False
        self.route_reasons = []
        self.explanation = None
        self.history = None
        self.summary = None
        self.user_vec = None

    def add(self, name: str, row: int, score: float) -> None:
        found = self.sources.get(row)
        if found is None:
            self.sources[row] = [name]
            self.retrieval[row] = score
        else:
            if name not in found:
                found.append(name)
            if score > self.retrieval[row]:
                self.retrieval[row] = score
