"""Tier 2's request path, one small stage per class (the edge's stage names where they do the same)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from strata.shared.contracts.api import RecommendRequest, parse_recommend
from strata.shared.errors import StrataError
from strata.shared.models.vector_index import PayloadFilter
from strata.shared.ranking.bandit import greedy_mask, select_topk
from strata.shared.ranking.confidence import ConfidenceConfig, Signals, confidence
from strata.shared.serving.codecs import decode, encode
from strata.shared.serving.impression_log import ImpressionLog, shown
from strata.shared.serving.pipeline import SUSPEND, Reply
from strata.streaming.tier2.model import Tier2Model
from strata.streaming.tier2.store import Tier2Store

logger = logging.getLogger(__name__)
_NONE = np.zeros(0, dtype=np.float64)


class Tier2Ctx:
    __slots__ = ("t0", "body", "ctype", "media", "model", "obj", "req", "vec", "vec_age_s", "degraded", "reasons",
                 "rows", "ids", "n_given", "n_unknown", "removed", "source", "clicks", "imps", "items", "confidence",
                 "alpha", "beta")

    def __init__(self, t0: int, body: bytes, ctype: bytes | None, media: str, model: Tier2Model) -> None:
        self.t0 = t0
        self.body = body
        self.ctype = ctype
        self.media = media
        self.model = model
        self.vec: np.ndarray | None = None
        self.vec_age_s: float | None = None
        self.degraded = False
        self.reasons: list[str] = []
        self.clicks: np.ndarray | None = None
        self.imps: np.ndarray | None = None
        self.n_given = self.n_unknown = self.removed = 0

    req: RecommendRequest
    rows: np.ndarray
    ids: list[str]


class Decode:
    name = "decode"

    def run(self, ctx: Tier2Ctx) -> None:
        ctx.obj = decode(ctx.body, ctx.ctype)


class Validate:
    name = "validate"

    def run(self, ctx: Tier2Ctx) -> None:
        ctx.req = parse_recommend(ctx.obj)


class SessionStage:
    """The session's vector straight from the store (every request: the freshest write, no cache)."""

    name = "session"
    suspends = True

    def __init__(self, store: Tier2Store) -> None:
        self.store = store

    def run(self, ctx: Tier2Ctx) -> object:
        return SUSPEND

    async def complete(self, ctx: Tier2Ctx) -> None:
        req = ctx.req
        try:
            state = await self.store.session(req.tenant, req.session_id)
        except StrataError as exc:
            logger.warning("tier 2: %s; answering without the session", exc.reason)
            ctx.degraded = True
            ctx.reasons.append("store_unavailable")
            return
        ctx.vec = state.vec
        if state.vec is None:
            ctx.reasons.append("no_session_vector")
        else:
            ctx.reasons.append("fresh_session_vector")
            if state.updated_ms is not None:
                ctx.vec_age_s = max(time.time() - state.updated_ms / 1000, 0.0)


class Candidates:
    """The request's ids; else the nearest items to the session vector (ANN); else the popular pool."""

    name = "candidates"

    def __init__(self, ef: int | None = None, exact: bool = False) -> None:
        self.ef = ef
        self.exact = exact
        self.failures = 0

    def run(self, ctx: Tier2Ctx) -> None:
        model, req = ctx.model, ctx.req
        if req.candidates:
            ids = list(dict.fromkeys(req.candidates))
            ctx.ids, ctx.rows, ctx.source = ids, model.lookup(ids), "given"
            ctx.n_given = len(ids)
            return
        age = req.context.age_verified
        if ctx.vec is not None:
            equals = {} if age else {"age_restricted": 0}
            flt = PayloadFilter(equals=equals, none_of={"category": list(model.policy.banned_categories)})
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
                    ctx.ids, ctx.rows, ctx.source = ids, model.lookup(ids), "ann"
                    return
        rows = model.pool(req.context.channel, age)
        ctx.rows, ctx.source = rows, "popular"
        item_ids = model.bundle.item_ids
        ctx.ids = [item_ids[r] for r in rows.tolist()]


class GuardrailFilter:
    """Banned items and categories, the age gate (``shared.ranking.guardrails``), checked on every candidate."""

    name = "guardrails"

    def __init__(self, on_removed: Callable[[np.ndarray], None]) -> None:
        self.on_removed = on_removed

    def run(self, ctx: Tier2Ctx) -> None:
        res = ctx.model.guard.filter(ctx.rows, ctx.req.context.age_verified, ctx.ids)
        if res.removed.shape[0]:
            self.on_removed(res.reason_codes)
            kept = res.kept
            ctx.rows = ctx.rows[kept]
            ctx.ids = [ctx.ids[i] for i in kept.tolist()]
            ctx.removed = int(res.removed.shape[0])
        ctx.n_unknown = int(np.count_nonzero(ctx.rows < 0))


class Counts:
    """The slot's clicks and impressions of exactly these candidates (and of the pool, for a fill)."""

    name = "counts"
    suspends = True

    def __init__(self, store: Tier2Store) -> None:
        self.store = store

    def run(self, ctx: Tier2Ctx) -> object:
        if "store_unavailable" in ctx.reasons or not ctx.ids:
            return None                     # the session read already failed: do not wait twice
        return SUSPEND

    async def complete(self, ctx: Tier2Ctx) -> None:
        req = ctx.req
        try:
            ctx.clicks, ctx.imps = await self.store.counts(req.tenant, req.slot, ctx.ids)
        except StrataError as exc:
            logger.warning("tier 2: %s; ranking on the model's prior", exc.reason)
            ctx.degraded = True
            ctx.reasons.append("store_unavailable")


class Picked(NamedTuple):
    items: list[dict]
    cats: list[int]             # category codes of the placed items (a fill continues their window)
    explored: int
    alpha: np.ndarray           # the posterior each placed item was sampled from
    beta: np.ndarray
    margin: float


class RankSelect:
    """Scorer + bandit (one Thompson draw per candidate) -> top-k under the exploration budget and the
    diversity cap; a short answer (guardrails removed given candidates) is filled from the popular pool."""

    name = "rank_select"

    def __init__(self, cfg: ConfidenceConfig) -> None:
        self.cfg = cfg

    def run(self, ctx: Tier2Ctx) -> None:
        model, req = ctx.model, ctx.req
        k = req.k
        budget = model.bandit.budget_slots(k)
        got = _pick(ctx, ctx.rows, ctx.ids, ctx.clicks, ctx.imps, k, budget, [], 0)
        items, alpha, beta = got.items, got.alpha, got.beta
        target = k if ctx.source != "given" else min(k, ctx.n_given)
        if len(items) < target:
            pool = model.pool(req.context.channel, req.context.age_verified)
            rows = pool[~np.isin(pool, ctx.rows)]
            ids = [model.bundle.item_ids[r] for r in rows.tolist()]
            more = _pick(ctx, rows, ids, None, None, target - len(items), budget, got.cats, got.explored)
            if more.items:
                items = items + more.items
                alpha, beta = np.concatenate((alpha, more.alpha)), np.concatenate((beta, more.beta))
                ctx.reasons.append("filled_from_pool")
        ctx.items, ctx.alpha, ctx.beta = items, alpha, beta
        n = ctx.rows.shape[0]
        sig = Signals(session_known=ctx.vec is not None, session_age_s=ctx.vec_age_s,
                      concentration=float(np.mean(alpha + beta)) if items else model.bandit.n0,
                      margin=got.margin, known_share=(n - ctx.n_unknown) / n if n else 0.0)
        ctx.confidence = confidence(sig, self.cfg)


def _pick(ctx: Tier2Ctx, rows: np.ndarray, ids: list[str], clicks: np.ndarray | None, imps: np.ndarray | None,
          k: int, budget: int, prior: list[int], prior_explored: int) -> Picked:
    model = ctx.model
    if not rows.shape[0]:
        return Picked([], prior, prior_explored, _NONE, _NONE, 1.0)
    alpha, beta = model.posterior(rows, ctx.req.context, ctx.vec, clicks, imps)
    theta = model.rng.beta(alpha, beta)
    mean = alpha / (alpha + beta)
    cats = model.guard.categories_of(rows)
    d = select_topk(theta, mean, k, budget)
    if not prior and model.diversity.satisfied(cats[d.order]):
        picked, flags = d.order.tolist(), d.explored.tolist()
    else:
        order = np.argsort(-theta, kind="stable").tolist()
        picked, flags = model.diversity.select(order, cats, k, ~greedy_mask(mean, k), budget, prior=prior,
                                               prior_explored=prior_explored)
    scores = theta[picked].round(6).tolist()
    items = [{"item_id": ids[p], "score": s, "explored": e} for p, s, e in zip(picked, scores, flags, strict=True)]
    return Picked(items, [*prior, *cats[picked].tolist()], prior_explored + sum(flags), alpha[picked],
                  beta[picked], d.margin)


class Encode:
    """The answer in the negotiated codec: the edge's shape, ``tier="streaming"``; what it showed goes to the
    impression log (when one is configured)."""

    name = "encode"

    def __init__(self, next_id: Callable[[], str], on_answer: Callable[[Tier2Ctx], None],
                 impressions: ImpressionLog | None = None) -> None:
        self.next_id = next_id
        self.on_answer = on_answer
        self.impressions = impressions

    def run(self, ctx: Tier2Ctx) -> Reply:
        req = ctx.req
        request_id = self.next_id()
        impression_id = self.next_id()
        body = {"items": ctx.items, "tier": "streaming", "confidence": ctx.confidence,
                "route_reasons": [f"{ctx.source}_candidates", *ctx.reasons], "model_version": ctx.model.version,
                "unknown_candidates": ctx.n_unknown, "degraded": ctx.degraded, "request_id": request_id,
                "impression_id": impression_id,
                "timing": {"server_us": (time.perf_counter_ns() - ctx.t0) // 1000, "cache": "miss"}}
        self.on_answer(ctx)
        if self.impressions is not None and ctx.items:
            what = shown(req.tenant, req.user_id, req.session_id, req.slot, req.context.channel,
                          tuple(it["item_id"] for it in ctx.items), tuple(it["explored"] for it in ctx.items),
                          ctx.alpha, ctx.beta, ctx.model.version)
            self.impressions.offer(impression_id, int(time.time() * 1000), what, None)
        return Reply(200, ctx.media, encode(body, ctx.media))
