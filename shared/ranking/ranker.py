"""Scorer + bandit over one bundle: item ids -> rows, ONNX click probability -> Beta posterior -> one
Thompson draw per candidate. Synchronous, I/O-free and vectorised over candidates; every tier that ranks
an edge-scorer bundle (the edge, tier 2) ranks with this.

Buffers are allocated once per bundle (the feature matrix) and per context (the context block), not per
request.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from strata.shared.contracts.api import MAX_CANDIDATES, Context
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.bandit import BanditConfig, BetaSource, make_sampler, posterior
from strata.shared.ranking.features import FEATURE_DIM, assemble, context_block
from strata.shared.ranking.row_map import ItemIndex

EMPTY_F = np.zeros(0, dtype=np.float64)


class Posterior(NamedTuple):
    alpha: np.ndarray
    beta: np.ndarray
    imps: np.ndarray | None       # observed impressions per candidate; None when there are no observations
    n_known: int                  # candidates the bundle knows (the rest got the cold prior)


class Ranker:
    """One bundle's scorer, item index and sampler. ``max_rows``: the most rows one ``posterior`` call
    scores (candidates, a pool, a fill)."""

    __slots__ = ("bundle", "version", "bandit", "index", "_rng", "_buf", "_ctx")

    def __init__(self, bundle: LoadedBundle, bandit: BanditConfig, max_rows: int = MAX_CANDIDATES,
                 sampler: BetaSource | None = None) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.bandit = bandit
        self.index = ItemIndex(bundle.item_ids)
        self._rng = sampler if sampler is not None else make_sampler(bandit.seed)
        self._buf = np.empty((max(MAX_CANDIDATES, max_rows), FEATURE_DIM), dtype=np.float32)
        self._ctx: dict[tuple[str, str, int], np.ndarray] = {}

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, int]:
        """(row per id, -1 for ids the bundle does not know; number of unknown ids)."""
        return self.index.lookup(ids)

    def context(self, ctx: Context) -> np.ndarray:
        """The context block of a request (cached: channel x device x hour is a small set)."""
        key = (ctx.channel, ctx.device, ctx.hour)
        block = self._ctx.get(key)
        if block is None:
            block = self._ctx[key] = context_block(ctx.channel, ctx.device, ctx.hour)
        return block

    def probabilities(self, rows: np.ndarray, n_unknown: int, ctx: Context,
                      session_vec: np.ndarray | None) -> tuple[np.ndarray, int]:
        """(click probability per row: the scorer's for known rows, ``cold_prior`` for ``-1`` rows; known rows)."""
        b = self.bundle
        if not n_unknown:
            sims = None if session_vec is None else b.item_vectors[rows] @ session_vec
            x = assemble(b.item_features[rows], self.context(ctx), sims, out=self._buf)
            return b.scorer.score(x), rows.shape[0]
        known = rows >= 0
        known_rows = rows[known]
        p = np.full(rows.shape[0], self.bandit.cold_prior, dtype=np.float32)
        if known_rows.shape[0]:
            sims = None if session_vec is None else b.item_vectors[known_rows] @ session_vec
            p[known] = b.scorer.score(assemble(b.item_features[known_rows], self.context(ctx), sims, out=self._buf))
        return p, known_rows.shape[0]

    def posterior(self, rows: np.ndarray, n_unknown: int, ctx: Context, session_vec: np.ndarray | None,
                  clicks: np.ndarray | None, imps: np.ndarray | None) -> Posterior:
        """Beta posterior per candidate row: the model's probability as the prior, the counts as evidence
        (``clicks``/``imps`` aligned to ``rows``; None: no observations)."""
        if not rows.shape[0]:
            return Posterior(EMPTY_F, EMPTY_F, None, 0)
        p, n_known = self.probabilities(rows, n_unknown, ctx, session_vec)
        alpha, beta = posterior(p, clicks, imps, self.bandit.n0)
        return Posterior(alpha, beta, imps, n_known)

    def draw(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """One Thompson draw per candidate."""
        return self._rng.beta(alpha, beta) if alpha.shape[0] else EMPTY_F
