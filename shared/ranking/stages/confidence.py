"""How sure this tier is of its answer (``shared.ranking.confidence``), from inputs every tier computes the
same way:

- session known and fresh: a session vector was read (with consent), and its age;
- concentration: ``concentration_prior`` plus the mean impressions observed of the answer's items (alpha +
  beta - n0, what was shown, fill included);
- margin: the k-th minus (k+1)-th posterior mean among the candidates;
- known share: the share of the candidates (after the guardrails) that the bundle knows.
"""

from __future__ import annotations

import numpy as np

from strata.shared.ranking.confidence import ConfidenceConfig, Signals, confidence
from strata.shared.ranking.stages.ctx import RankCtx

_sum = np.add.reduce         # without ndarray.sum's Python-level wrapper


class ConfidenceStage:
    name = "confidence"

    def __init__(self, cfg: ConfidenceConfig) -> None:
        self.cfg = cfg

    def run(self, ctx: RankCtx) -> None:
        n = ctx.rows.shape[0]
        picked = ctx.picked
        m = picked.shape[0]
        total = float(_sum(ctx.strength[picked])) if m else 0.0
        fill = ctx.fill_post
        if fill is not None:
            total += float(_sum(fill[0]) + _sum(fill[1]))
            m += fill[0].shape[0]
        # alpha + beta = n0 + impressions observed: the evidence beyond the prior, on the reference's scale
        cfg = self.cfg
        evidence = max(total / m - ctx.model.ranker.bandit.n0, 0.0) if m else 0.0
        sig = ctx.signals = Signals(session_known=ctx.vec is not None, session_age_s=ctx.vec_age_s,
                                    concentration=cfg.concentration_prior + evidence,
                                    margin=ctx.margin, known_share=ctx.n_known / n if n else 0.0)
        ctx.confidence = confidence(sig, cfg)
