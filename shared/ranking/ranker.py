"""Scorer + bandit over one bundle: item ids -> rows, ONNX click probability -> Beta posterior -> one
Thompson draw per candidate. Synchronous, I/O-free and vectorised over candidates; every tier that ranks
an edge-scorer bundle (the edge, tier 2) ranks with this.

Buffers are allocated once per bundle (the feature matrix) and per context (the context block), not per
request. Without a session vector an item's click probability depends only on the bundle and the request's
context, so it is computed once per (item, context) and then read (``_Prior``): a request without a session
costs a gather instead of a feature matrix and an onnxruntime call. Requests with a session vector score
their candidates (the similarity feature is theirs alone).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from strata.shared.contracts.api import MAX_CANDIDATES, Context
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.bandit import BanditConfig, BetaSource, CompiledBeta, make_sampler, posterior
from strata.shared.ranking.features import FEATURE_DIM, assemble, context_block
from strata.shared.ranking.row_map import ItemIndex

EMPTY_F = np.zeros(0, dtype=np.float64)
_sum = np.add.reduce
PRIOR_CACHE_BYTES = 64 << 20       # memoized no-session probabilities, per bundle (LRU over contexts)


class Posterior(NamedTuple):
    alpha: np.ndarray
    beta: np.ndarray
    imps: np.ndarray | None       # observed impressions per candidate; None when there are no observations
    n_known: int                  # candidates the bundle knows (the rest got the cold prior)
    p: np.ndarray                 # the scorer's click probability per candidate (the prior's mean)


class Ranker:
    """One bundle's scorer, item index and sampler. ``max_rows``: the most rows one ``posterior`` call
    scores (candidates, a pool, a fill)."""

    __slots__ = ("bundle", "version", "bandit", "index", "_rng", "_buf", "_ctx", "_prior", "_prior_max", "_stamp",
                 "_positions", "_fill")

    def __init__(self, bundle: LoadedBundle, bandit: BanditConfig, max_rows: int = MAX_CANDIDATES,
                 sampler: BetaSource | None = None) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.bandit = bandit
        self.index = ItemIndex(bundle.item_ids)
        self._rng = sampler if sampler is not None else make_sampler(bandit.seed)
        # the compiled sampler's fill(alpha, beta, out): no argument conversion on the hot path
        self._fill = getattr(self._rng, "fill", None) if CompiledBeta is not None and isinstance(
            self._rng, CompiledBeta) else None
        self._buf = np.empty((max(MAX_CANDIDATES, max_rows), FEATURE_DIM), dtype=np.float32)
        self._ctx: dict[tuple[str, str, int], np.ndarray] = {}
        self._prior: OrderedDict[tuple[str, str, int], np.ndarray] = OrderedDict()
        self._prior_max = max(PRIOR_CACHE_BYTES // (4 * max(len(bundle.item_ids), 1)), 1)
        self._stamp = np.zeros(len(bundle.item_ids), dtype=np.int64)       # scratch for ``repeats``
        self._positions = np.arange(max(MAX_CANDIDATES, max_rows), dtype=np.int64)

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, int]:
        """(row per id, -1 for ids the bundle does not know; number of unknown ids)."""
        return self.index.lookup(ids)

    def repeats(self, rows: np.ndarray) -> np.bool_:
        """Does a known row occur twice in ``rows`` (all >= 0)? Two gathers on a scratch array instead of a set
        of the ids (synchronous: nothing else uses the scratch in between)."""
        pos = self._positions[:rows.shape[0]]
        stamp = self._stamp
        stamp[rows] = pos                     # a repeated row keeps its last position
        return np.count_nonzero(stamp[rows] != pos) > 0

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
        if session_vec is None:
            if not n_unknown:
                return self._no_session(rows, ctx), rows.shape[0]
            known = rows >= 0
            known_rows = rows[known]
            p = np.full(rows.shape[0], self.bandit.cold_prior, dtype=np.float32)
            p[known] = self._no_session(known_rows, ctx)
            return p, known_rows.shape[0]
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

    def _no_session(self, rows: np.ndarray, ctx: Context) -> np.ndarray:
        """The scorer's probability of known ``rows`` without a session, computed once per item and context."""
        key = (ctx.channel, ctx.device, ctx.hour)
        memo = self._prior.get(key)
        if memo is None:
            memo = self._prior[key] = np.full(len(self.bundle.item_ids), np.nan, dtype=np.float32)
            if len(self._prior) > self._prior_max:
                self._prior.popitem(last=False)
        else:
            self._prior.move_to_end(key)
        p = memo[rows]
        if math.isnan(_sum(p)):                 # not all scored yet in this context (NaN marks unscored)
            new = np.unique(rows[np.isnan(p)])
            b = self.bundle
            memo[new] = b.scorer.score(assemble(b.item_features[new], self.context(ctx), None, out=self._buf))
            p = memo[rows]
        return p

    def posterior(self, rows: np.ndarray, n_unknown: int, ctx: Context, session_vec: np.ndarray | None,
                  clicks: np.ndarray | None, imps: np.ndarray | None,
                  expected: np.ndarray | None = None) -> Posterior:
        """Beta posterior per candidate row: the model's probability as the prior, the counts as evidence
        (``clicks``/``imps``/``expected`` clicks aligned to ``rows``; None: no observations)."""
        if not rows.shape[0]:
            return Posterior(EMPTY_F, EMPTY_F, None, 0, EMPTY_F)
        p, n_known = self.probabilities(rows, n_unknown, ctx, session_vec)
        bandit = self.bandit
        alpha, beta = posterior(p, clicks, imps, bandit.n0, expected, bandit.lift_prior)
        return Posterior(alpha, beta, imps, n_known, p)

    def draw(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """One Thompson draw per candidate (``alpha``/``beta`` as ``posterior`` makes them: contiguous float64)."""
        n = alpha.shape[0]
        if not n:
            return EMPTY_F
        fill = self._fill
        if fill is None:
            return self._rng.beta(alpha, beta)
        out = np.empty(n)
        fill(alpha, beta, out)
        return out
