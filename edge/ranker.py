"""The edge decision: candidates -> features -> ONNX scorer -> Thompson sampling -> top-k -> confidence.

Synchronous and I/O-free: the service gathers the session vector and bandit counts first, so this
function is what the in-process benchmark measures. Everything is vectorised over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.bandit_cache import BanditCounts, SlotCounts
from edge.bundle_loader import LoadedBundle
from edge.item_index import ItemIndex
from shared.bandit import BanditConfig, make_sampler, posterior, thompson_topk
from shared.confidence import ConfidenceConfig, Signals, confidence, route_by_confidence
from shared.contracts import MAX_CANDIDATES, RecommendRequest
from shared.features import FEATURE_DIM, assemble, context_block


@dataclass(slots=True)
class RankResult:
    items: list[dict]              # [{"item_id", "score", "explored"}], best first
    confidence: float
    route_tier: str                # where the router would send this request
    route_reasons: list[str]
    unknown_candidates: int
    explored: int


class Ranker:
    """Ranks with one loaded bundle. A new bundle gets a new Ranker (swapped atomically by the service)."""

    def __init__(self, bundle: LoadedBundle, bandit: BanditConfig, conf: ConfidenceConfig, pool_size: int,
                 seed: int | None = None) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.bandit = bandit
        self.conf = conf
        self.pool_size = pool_size
        self.counts = BanditCounts(len(bundle.item_ids))
        self._rng = make_sampler(seed)
        self._buf = np.empty((MAX_CANDIDATES, FEATURE_DIM), dtype=np.float32)
        self._ctx: dict[tuple[str, str, int], np.ndarray] = {}
        self._pools = {seg: rows[:pool_size] for seg, rows in bundle.pools.items()}
        self._index = ItemIndex(bundle.item_ids)

    def _context(self, channel: str, device: str, hour: int) -> np.ndarray:
        key = (channel, device, hour)
        ctx = self._ctx.get(key)
        if ctx is None:
            ctx = self._ctx[key] = context_block(channel, device, hour)
        return ctx

    def rank(self, req: RecommendRequest, session_vec: np.ndarray | None = None,
             session_age_s: float | None = None, counts: SlotCounts | None = None) -> RankResult:
        b = self.bundle
        ctx = req.context
        if counts is None:
            counts = self.counts.get(req.tenant, req.slot)
        cand: list[str] | None = None
        known = None
        if not req.candidates:                                 # none or [] -> the cached pool
            rows = self._pools.get(ctx.channel)
            if rows is None:
                rows = self._pools["default"]
            known_rows = rows
            n = rows.shape[0]
        else:
            cand = req.candidates
            if len(set(cand)) != len(cand):
                cand = list(dict.fromkeys(cand))               # dedupe, keep order
            n = len(cand)
            rows, n_unknown = self._index.lookup(cand)
            if not n_unknown:
                known_rows = rows
            else:
                known = rows >= 0
                known_rows = rows[known]
        n_known = known_rows.shape[0]
        observed = not counts.empty
        scores = None
        if n_known:
            sims = None if session_vec is None else b.item_vectors[known_rows] @ session_vec
            x = assemble(b.item_features[known_rows], self._context(ctx.channel, ctx.device, ctx.hour), sims,
                         out=self._buf)
            scores = b.scorer.score(x)
        if known is None:
            p = scores
            clicks = counts.clicks[rows] if observed else None
            imps = counts.imps[rows] if observed else None
        else:
            p = np.full(n, self.bandit.cold_prior, dtype=np.float64)
            if n_known:
                p[known] = scores
            clicks = imps = None
            if observed:
                clicks = np.zeros(n, dtype=np.float64)
                imps = np.zeros(n, dtype=np.float64)
                clicks[known] = counts.clicks[known_rows]
                imps[known] = counts.imps[known_rows]
                if counts.extra:
                    for pos in np.flatnonzero(~known).tolist():
                        clicks[pos], imps[pos] = counts.extra.get(cand[pos], (0.0, 0.0))
        n0 = self.bandit.n0
        alpha, beta = posterior(p, clicks, imps, n0)
        k = req.k
        d = thompson_topk(alpha, beta, k, self.bandit.budget_slots(k), self._rng)
        order = d.order
        if cand is None:
            ids = b.item_ids
            names = [ids[r] for r in rows[order].tolist()]
        else:
            names = [cand[i] for i in order.tolist()]
        explored = d.explored.tolist()
        items = [{"item_id": i, "score": s, "explored": e}
                 for i, s, e in zip(names, d.theta[order].round(6).tolist(), explored, strict=True)]
        # alpha + beta = n0 + impressions (up to the tiny clamp), so concentration needs no extra pass.
        conc = n0 + float(imps[order].mean()) if imps is not None and order.shape[0] else n0
        sig = Signals(session_known=session_vec is not None, session_age_s=session_age_s, concentration=conc,
                      margin=d.margin, known_share=n_known / n if n else 0.0)
        conf = confidence(sig, self.conf)
        tier, reasons = route_by_confidence(conf, sig, req.explain, self.conf)
        return RankResult(items, conf, tier, reasons, n - n_known, sum(explored))
