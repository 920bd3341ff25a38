"""The narrow slot hot reload works through: install a bundle, read the live model, refused versions.

A ``LiveModel`` is what one request ranks with: the ``Ranker`` of one bundle, the guardrail filter
compiled for that bundle's catalog and the current policy, and the pools already filtered per age
state. It is replaced as a whole (one attribute store, atomic on the event loop) when a bundle is
installed or the guardrail policy changes; ``tag`` changes with it and is part of every response-cache
key, so an answer made under an old model or policy is never served again.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import numpy as np

from strata.edge.ranker import Ranker
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.guardrails import CatalogGuard, DiversitySelector, Guardrails

logger = logging.getLogger(__name__)
_GENERATION = itertools.count(1)


class LiveModel:
    __slots__ = ("ranker", "guard", "diversity", "tag", "version", "_clean_pools")

    def __init__(self, ranker: Ranker, policy: Guardrails) -> None:
        b = ranker.bundle
        self.ranker = ranker
        self.version = ranker.version
        self.guard = CatalogGuard(policy, b.item_ids, b.categories, b.age_restricted)
        self.diversity = DiversitySelector(policy.max_per_category, policy.diversity_window)
        self.tag = (ranker.version, next(_GENERATION))
        # Pools are filtered once per age state here, not per request.
        self._clean_pools = {(seg, age): self.guard.clean(rows, age)
                             for seg, rows in ranker.pools.items() for age in (False, True)}
        if self.guard.unmatched_categories:
            logger.warning("banned categories match no category of bundle %s: %s", self.version,
                           list(self.guard.unmatched_categories))

    def clean_pool(self, channel: str, age_verified: bool) -> np.ndarray:
        rows = self._clean_pools.get((channel, age_verified))
        return rows if rows is not None else self._clean_pools[("default", age_verified)]


class ModelSlot:
    """Holds the live model; ``install`` swaps a new bundle in, ``set_policy`` a new guardrail policy."""

    def __init__(self, make_ranker: Callable[[LoadedBundle], Ranker], policy: Guardrails,
                 on_install: Callable[[str], None] | None = None) -> None:
        self._make_ranker = make_ranker
        self.policy = policy
        self.current: LiveModel | None = None
        self.refused: set[str] = set()        # bad bundles, not retried until CURRENT names another
        self._on_install = on_install

    @property
    def version(self) -> str | None:
        live = self.current
        return live.version if live is not None else None

    def install(self, bundle: LoadedBundle) -> LiveModel:
        """Build everything for the new bundle first, then swap (requests see the old or the new, whole)."""
        live = LiveModel(self._make_ranker(bundle), self.policy)
        self.current = live
        if self._on_install is not None:
            self._on_install(live.version)
        return live

    def refuse(self, version: str) -> None:
        self.refused.add(version)

    def set_policy(self, policy: Guardrails) -> bool:
        """Apply a new guardrail policy to the live model; False when nothing changed."""
        if policy == self.policy:
            return False
        live = self.current
        new = LiveModel(live.ranker, policy) if live is not None else None   # validate before swapping
        self.policy = policy
        if new is not None:
            self.current = new
        return True
