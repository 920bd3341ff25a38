"""The state one origin request carries through the stages; a stage reads only what earlier stages wrote."""

from __future__ import annotations

from collections import Counter

import numpy as np

from strata.origin.profiles import EMPTY, Profile
from strata.origin.state import OriginState
from strata.shared.contracts.origin import OriginRequest


class OriginCtx:
    __slots__ = (
        "t0", "body", "ctype", "accept", "media", "state", "explain", "caller", "given",
        "obj", "oreq", "profile", "query_words", "query_vec", "seeds",
        "sources", "retrieval", "query_match", "rows", "removed", "degraded", "route_reasons",
        "scores", "order", "picked", "explored", "explanation", "history", "summary", "user_vec",
    )

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, accept: bytes | None, media: str,
                 state: OriginState, explain: bool = False) -> None:
        self.t0 = t0
        self.body = body
        self.ctype = ctype
        self.accept = accept
        self.media = media
        self.state = state
        self.explain = explain
        self.caller = None                             # who the gate admitted (None: auth off): the tenant
        self.given = False                             # the candidates are the request's (item_ids, candidates)
        self.profile: Profile = EMPTY
        self.query_words: list[str] = []
        self.query_vec: np.ndarray | None = None
        self.seeds: list[int] = []                     # rows the query found best (co-visitation expands them)
        self.sources: dict[int, list[str]] = {}       # catalog row -> names of the sources that found it
        self.retrieval: dict[int, float] = {}         # catalog row -> best source score in [0, 1]
        self.query_match: dict[int, float] = {}       # catalog row -> share of the query's words it matches
        self.removed: Counter[str] = Counter()        # reason -> items removed by the filters
        self.degraded = False
        self.route_reasons: list[str] = []
        self.explanation = None
        self.history = None                            # the user's Histories for the models (two-tower source)
        self.summary = None                            # its HistorySummary (the ranker's repeat features)
        self.user_vec: np.ndarray | None = None        # the user tower's vector

    oreq: OriginRequest
    rows: np.ndarray

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
