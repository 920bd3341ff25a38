"""Tier 2's own stages; the rest of its request path is the ranking kernel (``shared.ranking.stages``).

- ``StoreSessions``: the session straight from the store on every request (the freshest write, no cache),
  behind the kernel's consent-gated session stage;
- ``AnnCandidates``: when the request names no candidates, the nearest items to the session vector (ANN
  over the bundle's item vectors), else the popular pool;
- ``StoreCounts`` / ``PoolCounts``: the slot's clicks and impressions of exactly these candidates, read
  fresh from the store (and of the pool items a fill may take, only when a fill is needed).
"""

from __future__ import annotations

import logging
import time

from strata.shared.errors import StrataError
from strata.shared.models.vector_index import PayloadFilter
from strata.shared.online_store.codecs import ItemCounts
from strata.shared.ranking.stages.ctx import RankCtx
from strata.shared.ranking.stages.fill import fill_rows
from strata.shared.ranking.stages.session import Session
from strata.shared.serving.pipeline import SUSPEND
from strata.streaming.tier2.model import Tier2Model
from strata.streaming.tier2.store import Tier2Store

logger = logging.getLogger(__name__)
STORE_DOWN = "store_unavailable"


class Tier2Ctx(RankCtx):
    __slots__ = ("source",)

    model: Tier2Model               # tier 2's handler builds it
    source: str                     # where the candidates came from: "given" | "ann" | "popular"


class StoreSessions:
    """The session from the store within its budget (``shared.ranking.stages.session.SessionSource``)."""

    def __init__(self, store: Tier2Store) -> None:
        self.store = store

    def cached(self, tenant: str, session_id: str) -> Session | None:
        return None                         # always read: tier 2 serves the freshest write

    async def fetch(self, tenant: str, session_id: str) -> Session:
        try:
            state = await self.store.session(tenant, session_id)
        except StrataError as exc:
            logger.warning("tier 2: %s; answering without the session", exc.reason)
            return Session(None, None, True, STORE_DOWN)
        if state.vec is None:
            return Session(None, None, False, "no_session_vector")
        age = None if state.updated_ms is None else max(time.time() - state.updated_ms / 1000, 0.0)
        return Session(state.vec, age, False, "fresh_session_vector")


class AnnCandidates:
    """The request's ids; else the nearest items to the session vector (ANN); else the popular pool."""

    name = "ann"

    def __init__(self, ef: int | None = None, exact: bool = False) -> None:
        self.ef = ef
        self.exact = exact
        self.failures = 0

    def run(self, ctx: Tier2Ctx) -> None:
        if not ctx.channel_pool:
            _source(ctx, "given")
            return
        if ctx.vec is not None:
            model = ctx.model
            age = ctx.req.context.age_verified
            flt = PayloadFilter(equals={} if age else {"age_restricted": 0},
                                none_of={"category": list(model.policy.banned_categories)})
            try:
                hits = model.index.search(ctx.vec, model.retrieve, flt, ef=self.ef, exact=self.exact)
            except StrataError as exc:
                self.failures += 1
                logger.warning("tier 2: ANN retrieval failed; popular items stand in: %s", exc.reason)
                ctx.degraded = True
                ctx.reasons.append("retrieval_failed")
            else:
                if hits:
                    ids = [h.key for h in hits]
                    ctx.ids = ids
                    ctx.rows, ctx.n_unknown = model.ranker.lookup(ids)
                    ctx.channel_pool = False        # a fill from the pool may complete it
                    _source(ctx, "ann")
                    return
        _source(ctx, "popular")


def _source(ctx: Tier2Ctx, source: str) -> None:
    ctx.source = source
    ctx.reasons.append(f"{source}_candidates")


class StoreCounts:
    """The slot's clicks and impressions of exactly these candidates, read fresh (``ItemCounts``)."""

    name = "counts"
    suspends = True

    def __init__(self, store: Tier2Store) -> None:
        self.store = store

    def run(self, ctx: Tier2Ctx) -> object:
        if STORE_DOWN in ctx.reasons or not ctx.rows.shape[0]:
            return None                     # the session read already failed: do not wait twice
        return SUSPEND

    async def complete(self, ctx: Tier2Ctx) -> None:
        names = ctx.candidate_names()
        counts = ItemCounts(ctx.model.bundle.item_ids)
        if await _read(self.store, ctx, counts, names):
            ctx.counts = counts


class PoolCounts:
    """Before a fill: the counts of the pool items it may take (read only when the answer is short)."""

    name = "pool_counts"
    suspends = True

    def __init__(self, store: Tier2Store) -> None:
        self.store = store

    def run(self, ctx: Tier2Ctx) -> object:
        if ctx.channel_pool or len(ctx.items) >= ctx.target or not isinstance(ctx.counts, ItemCounts):
            return None
        return SUSPEND

    async def complete(self, ctx: Tier2Ctx) -> None:
        counts = ctx.counts
        assert isinstance(counts, ItemCounts)       # run suspends only then
        item_ids = ctx.model.bundle.item_ids
        names = [item_ids[r] for r in fill_rows(ctx).tolist()]
        if names:
            await _read(self.store, ctx, counts, names)


async def _read(store: Tier2Store, ctx: Tier2Ctx, counts: ItemCounts, names: list[str]) -> bool:
    req = ctx.req
    try:
        counts.add(names, await store.counts(req.tenant, req.slot, names))
    except StrataError as exc:
        logger.warning("tier 2: %s; ranking on the model's prior", exc.reason)
        ctx.degraded = True
        ctx.reasons.append(STORE_DOWN)
        return False
    return True
