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


class RankingModel:
    __slots__ = ("ranker", "bundle", "version", "policy", "guard", "diversity", "pool_size", "tag", "_pools")

    def __init__(self, ranker: Ranker, policy: Guardrails, pool_size: int) -> None:
        b = ranker.bundle
        self.ranker = ranker
        self.bundle = b
        self.version = ranker.version
        self.policy = policy
        self.guard = CatalogGuard(policy, b.item_ids, b.categories, b.age_restricted)
        self.diversity = DiversitySelector(policy.max_per_category, policy.diversity_window)
        self.pool_size = pool_size
        self.tag = (ranker.version, next(_GENERATION))
        self._pools = {(seg, age): self.guard.clean(rows[:pool_size], age)
                       for seg, rows in b.pools.items() for age in (False, True)}
        if self.guard.unmatched_categories:
            logger.warning("banned categories match no category of bundle %s: %s", self.version,
                           list(self.guard.unmatched_categories))

    def pool(self, channel: str, age_verified: bool) -> np.ndarray:
        """The channel's popular rows (else the default segment's) that the guardrails allow, best first."""
        rows = self._pools.get((channel, age_verified))
        return rows if rows is not None else self._pools[("default", age_verified)]
