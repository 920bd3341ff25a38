"""The two-tower's nearest usable items for a user vector: HNSW, checked, exact when the check fails.

Why a check: 82% of the synthetic world's items were never bought, so the item tower places them by
category, price bucket and title alone, in tight per-category clusters (a query's exact top 500 lie within
~0.03 of cosine, often all in one category of ~3.3k usable items). A beam of ``ef`` 3000 that enters the
wrong cluster fills up there and never leaves it: at 100k items one query in 100 found none of its true top
500 (recall 0.0), though the mean was 0.98; a denser graph or other payload links moved which query
failed, not whether one did (README, Origin tier).

The check: a fixed, evenly spaced sample of ``SENTINELS`` items is scored exactly (4096 x 64, vectors kept
contiguous: ~0.1 ms with the bookkeeping). An ANN answer that is complete contains every usable sample item
scoring above its own lowest hit; one that is not is replaced by an exact numpy scan of the usable items
(~8 ms at 100k, most of it reading the 25 MB of vectors). A query that misses its whole
neighbourhood has ~13 sampled items in it at 100k, so it is always caught; a small partial miss may pass.

Usable = in the catalog, in stock, passing the guardrails for the request's age gate: the mask is built
once per catalog version and age gate (a ``POST /v1/items`` moves the version). Items added after the
export (``OriginModels.cold``) are searched the same way and come back as catalog rows with their cosine.
"""

from __future__ import annotations

import logging

import numpy as np

from strata.origin.models import OriginModels
from strata.origin.retrieval import source_filter
from strata.origin.stages.ctx import OriginCtx
from strata.shared.errors import StrataError

logger = logging.getLogger(__name__)
SENTINELS = 4096
TIE = 1e-5          # a sample item must beat the lowest hit by this much to count as missed


class Nearest:
    """Model indices (best first) and cold (catalog row, cosine) pairs of one search."""

    __slots__ = ("items", "cold")

    def __init__(self, items: np.ndarray, cold: list[tuple[int, float]]) -> None:
        self.items = items
        self.cold = cold


class TowerSearch:
    def __init__(self, limit: int = 500, ef: int | None = None, exact: bool = False) -> None:
        self.limit = limit
        self.ef = ef
        self.exact = exact
        self.checked_exact = 0          # ANN answers the sample check replaced by an exact scan
        self.index_failures = 0

    def nearest(self, ctx: OriginCtx, models: OriginModels, user: np.ndarray) -> Nearest:
        """ANN (checked) when the index is loaded and works; else exact (index failure: degraded)."""
        age_ok = ctx.oreq.req.context.age_verified
        if models.index is not None and not self.exact:
            try:
                hits = models.index.search(user, self.limit, source_filter(ctx.state, age_ok), ef=self.ef)
            except StrataError as exc:
                self.index_failures += 1
                logger.warning("two-tower index failed; exact search instead: %s", exc.reason)
                ctx.degraded = True
                ctx.route_reasons.append("two_tower_index_failed")
            else:
                keys = [h.key for h in hits]
                items = models.model_of(keys)
                usable = usable_items(ctx, models)
                if complete(models, user, items[items >= 0], min((h.score for h in hits), default=-np.inf), usable):
                    row = ctx.state.catalog.row
                    cold = [(r, h.score) for h, m in zip(hits, items.tolist(), strict=True)
                            if m < 0 and (r := row.get(h.key, -1)) in models.cold]
                    return Nearest(items[items >= 0], cold)
                self.checked_exact += 1
        return exact_nearest(ctx, models, user, self.limit)


def complete(models: OriginModels, user: np.ndarray, found: np.ndarray, lowest: float, usable: np.ndarray) -> bool:
    """False when a usable sample item scores above the answer's lowest hit but is not in it."""
    sample, vectors = models.sentinels(SENTINELS)
    above = sample[(vectors @ user) > lowest + TIE]
    if not above.size:
        return True
    missed = above[usable[above]]
    return bool(np.isin(missed, found).all())


def usable_items(ctx: OriginCtx, models: OriginModels) -> np.ndarray:
    """bool per model item: what the index filter lets through (in the catalog, in stock, guardrails)."""
    state = ctx.state
    age_ok = bool(ctx.oreq.req.context.age_verified)
    key = (state.catalog.version, age_ok, id(state))
    cached = models.usable_cache.get(age_ok)
    if cached is not None and cached[0] == key:
        return cached[1]
    rows = models.row_of_model
    known = np.flatnonzero(rows >= 0)
    kept = known[state.guard.filter(rows[known], age_ok).kept]
    mask = np.zeros(rows.size, dtype=bool)
    mask[kept[state.catalog.stock[rows[kept]] > 0]] = True
    models.usable_cache[age_ok] = (key, mask)
    return mask


def exact_nearest(ctx: OriginCtx, models: OriginModels, user: np.ndarray, n: int) -> Nearest:
    """The ``n`` nearest usable items by dot product (model items and cold ones together), best first."""
    usable = usable_items(ctx, models)
    sims = models.pipeline.item_vectors @ user
    sims = np.where(usable, sims, -np.inf)
    cold_rows, cold_sims = _cold_usable(ctx, models, user)
    allsims = np.concatenate([sims, cold_sims])
    n = min(n, int(np.isfinite(allsims).sum()))
    if n <= 0:
        return Nearest(np.zeros(0, np.int64), [])
    top = np.argpartition(-allsims, n - 1)[:n] if n < allsims.size else np.arange(allsims.size)
    top = top[np.argsort(-allsims[top], kind="stable")]
    top = top[np.isfinite(allsims[top])]
    m = sims.size
    items = top[top < m].astype(np.int64)
    cold = [(int(cold_rows[i - m]), float(allsims[i])) for i in top[top >= m].tolist()]
    return Nearest(items, cold)


def _cold_usable(ctx: OriginCtx, models: OriginModels, user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not models.cold:
        return np.zeros(0, np.int64), np.zeros(0)
    state = ctx.state
    rows = np.fromiter(models.cold, dtype=np.int64, count=len(models.cold))
    ok = rows[state.guard.filter(rows, ctx.oreq.req.context.age_verified).kept]
    ok = ok[state.catalog.stock[ok] > 0]
    sims = np.array([float(models.cold[r] @ user) for r in ok.tolist()], dtype=np.float64)
    return ok, sims
