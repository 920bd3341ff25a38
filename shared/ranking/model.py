"""What one request ranks with: a ``Ranker`` (one bundle) under one guardrail policy.

The guardrail filter compiled for the bundle's catalog and the policy, the diversity rule, and the
bundle's popular pools (the first ``pool_size`` rows of each segment) already filtered per age state,
so no request filters a pool. A model is replaced whole (one attribute store) when a bundle is installed
or the policy changes; ``tag`` changes with it, so a cache keyed by it never serves an answer made under
an old model or policy.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from strata.shared.ranking.guardrails import CatalogGuard, DiversitySelector, Guardrails
from strata.shared.ranking.ranker import Ranker

logger = logging.getLogger(__name__)
_GENERATION = itertools.count(1)
FRESH_SHARE = 10        # new catalog items take up to 1/FRESH_SHARE of a pool


class RankingModel:
    __slots__ = ("ranker", "bundle", "version", "policy", "guard", "diversity", "pool_size", "tag", "_pools")

    def __init__(self, ranker: Ranker, policy: Guardrails, pool_size: int) -> None:
        b = ranker.bundle
        self.ranker = ranker
        self.bundle = b
        self.version = ranker.version
        self.policy = policy
        self.guard = CatalogGuard(policy, b.item_ids, b.categories, b.age_restricted, b.in_stock,
                                  b.earlier_categories)
        self.diversity = DiversitySelector(policy.max_per_category, policy.diversity_window)
        self.pool_size = pool_size
        self.tag = (ranker.version, next(_GENERATION))
        # items the catalog topic added after the export have no popularity yet: the newest of them take up to a
        # tenth of every pool (the bandit explores them), the most popular rows the rest
        fresh = b.fresh[::-1][:max(1, pool_size // FRESH_SHARE)] if b.fresh is not None and b.fresh.size else \
            np.zeros(0, dtype=np.int64)
        self._pools = {(seg, age): self.guard.clean(np.concatenate([rows[:pool_size - fresh.size], fresh]), age)
                       for seg, rows in b.pools.items() for age in (False, True)}
        if self.guard.unmatched_categories:
            logger.warning("banned categories match no category of bundle %s: %s", self.version,
                           list(self.guard.unmatched_categories))

    def pool(self, channel: str, age_verified: bool) -> np.ndarray:
        """The channel's popular rows (else the default segment's) that the guardrails allow, best first."""
        rows = self._pools.get((channel, age_verified))
        return rows if rows is not None else self._pools[("default", age_verified)]
