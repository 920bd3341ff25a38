"""What one bundle needs to rank: item index, cached pools, the ONNX scorer, bandit counts, the sampler.

Synchronous and I/O-free, vectorised over candidates. The request path's stages (``edge.stages``)
call it: ``lookup`` / ``pool`` (candidates), ``posterior`` (features -> ONNX -> Beta posterior with the
model as prior and the slot's counts) and ``draw`` (one Thompson draw per candidate). A new bundle
gets a new Ranker, swapped in atomically by ``edge.model_slot``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from strata.edge.bandit_cache import BanditCounts, SlotCounts
from strata.edge.row_map import ItemIndex
from strata.shared.contracts.api import MAX_CANDIDATES, Context
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.bandit import BanditConfig, make_sampler, posterior
from strata.shared.ranking.features import FEATURE_DIM, assemble, context_block

_EMPTY_F = np.zeros(0, dtype=np.float64)


class Posterior(NamedTuple):
    alpha: np.ndarray
    beta: np.ndarray
    imps: np.ndarray | None       # observed impressions per candidate; None when the slot has none
    n_known: int                  # candidates the bundle knows (the rest got the cold prior)


class Ranker:
    def __init__(self, bundle: LoadedBundle, bandit: BanditConfig, pool_size: int,
                 counts: BanditCounts | None = None) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.bandit = bandit
        self.pool_size = pool_size
        self.counts = counts if counts is not None else BanditCounts(len(bundle.item_ids))
        self.index = ItemIndex(bundle.item_ids)
        self._rng = make_sampler(bandit.seed)
        self._buf = np.empty((max(MAX_CANDIDATES, pool_size), FEATURE_DIM), dtype=np.float32)
        self._ctx: dict[tuple[str, str, int], np.ndarray] = {}
        self.pools = {seg: rows[:pool_size] for seg, rows in bundle.pools.items()}

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, int]:
        """(row per id, -1 for ids the bundle does not know; number of unknown ids)."""
        return self.index.lookup(ids)

    def pool(self, channel: str) -> np.ndarray:
        """The cached candidate pool of a channel (most popular first), else the default pool."""
        rows = self.pools.get(channel)
        return rows if rows is not None else self.pools["default"]

    def _context(self, ctx: Context) -> np.ndarray:
        key = (ctx.channel, ctx.device, ctx.hour)
        block = self._ctx.get(key)
        if block is None:
            block = self._ctx[key] = context_block(ctx.channel, ctx.device, ctx.hour)
        return block

    def posterior(self, rows: np.ndarray, n_unknown: int, ids: list[str] | None, ctx: Context,
                  session_vec: np.ndarray | None, counts: SlotCounts) -> Posterior:
        """Beta posterior per candidate row (``-1`` rows: unknown to the bundle, named by ``ids``)."""
        n = rows.shape[0]
        if n == 0:
            return Posterior(_EMPTY_F, _EMPTY_F, None, 0)
        b = self.bundle
        known = None if not n_unknown else rows >= 0
        known_rows = rows if known is None else rows[known]
        n_known = known_rows.shape[0]
        observed = not counts.empty
        scores = None
        if n_known:
            sims = None if session_vec is None else b.item_vectors[known_rows] @ session_vec
            x = assemble(b.item_features[known_rows], self._context(ctx), sims, out=self._buf)
            scores = b.scorer.score(x)
        clicks = imps = None
        if known is None:
            p = scores
            if observed:
                clicks = counts.clicks[rows]
                imps = counts.imps[rows]
        else:
            p = np.full(n, self.bandit.cold_prior, dtype=np.float64)
            if n_known:
                p[known] = scores
            if observed:
                clicks = np.zeros(n, dtype=np.float64)
                imps = np.zeros(n, dtype=np.float64)
                clicks[known] = counts.clicks[known_rows]
                imps[known] = counts.imps[known_rows]
                if counts.extra and ids is not None:
                    for pos in np.flatnonzero(~known).tolist():
                        clicks[pos], imps[pos] = counts.extra.get(ids[pos], (0.0, 0.0))
        alpha, beta = posterior(p, clicks, imps, self.bandit.n0)
        return Posterior(alpha, beta, imps, n_known)

    def draw(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """One Thompson draw per candidate."""
        return self._rng.beta(alpha, beta) if alpha.shape[0] else _EMPTY_F
