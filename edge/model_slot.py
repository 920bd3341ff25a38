"""The narrow slot hot reload works through: install a bundle, read the live model, refused versions.

A ``LiveModel`` is what one request ranks with: the kernel's ``RankingModel`` (the bundle's ``Ranker``, the
guardrail filter compiled for its catalog and the current policy, the pools filtered per age state) plus
the slot counts the PoP keeps for that bundle's rows. It is replaced as a whole (one attribute store,
atomic on the event loop) when a bundle is installed or the guardrail policy changes; ``tag`` changes
with it and is part of every response-cache key, so an answer made under an old model or policy is never
served again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from strata.edge.bandit_cache import BanditCounts
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.catalog_overlay import CatalogOverlay
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.guardrails import Guardrails
from strata.shared.ranking.model import RankingModel
from strata.shared.ranking.ranker import Ranker

logger = logging.getLogger(__name__)


class LiveModel(RankingModel):
    __slots__ = ("counts",)

    def __init__(self, ranker: Ranker, counts: BanditCounts, policy: Guardrails, pool_size: int) -> None:
        super().__init__(ranker, policy, pool_size)
        self.counts = counts


class ModelSlot:
    """Holds the live model; ``install`` swaps a new bundle in, ``set_policy`` a new guardrail policy.

    ``make`` builds a bundle's ``Ranker`` and its counts (``edge.node``)."""

    def __init__(self, make: Callable[[LoadedBundle], tuple[Ranker, BanditCounts]], policy: Guardrails,
                 pool_size: int, on_install: Callable[[str], None] | None = None) -> None:
        self._make = make
        self.policy = policy
        self.pool_size = pool_size
        self.current: LiveModel | None = None
        self.refused: set[str] = set()        # bad bundles, not retried until CURRENT names another
        self._on_install = on_install
        self.overlay = CatalogOverlay()       # the catalog topic's changes, applied over every bundle
        self._base: LoadedBundle | None = None

    @property
    def version(self) -> str | None:
        live = self.current
        return live.version if live is not None else None

    def install(self, bundle: LoadedBundle) -> LiveModel:
        """Build everything for the new bundle (the catalog topic's changes applied over it) first, then swap
        (requests see the old or the new, whole)."""
        ranker, counts = self._make(self.overlay.apply(bundle))
        live = LiveModel(ranker, counts, self.policy, self.pool_size)
        self._base = bundle
        self.current = live
        if self._on_install is not None:
            self._on_install(live.version)
        return live

    def apply_catalog(self, updates: list[ItemUpdate]) -> None:
        """Catalog topic records (``shared.catalog_feed``): the live model is rebuilt over the same bundle with
        them applied; the bandit counts read so far are carried over (rows only ever grow)."""
        self.overlay.add(updates)
        live, base = self.current, self._base
        if live is None or base is None:
            return                              # applied when the first bundle is installed
        ranker, counts = self._make(self.overlay.apply(base))
        counts.carry_over(live.counts, ranker.index)
        self.current = LiveModel(ranker, counts, self.policy, self.pool_size)

    def refuse(self, version: str) -> None:
        self.refused.add(version)

    def set_policy(self, policy: Guardrails) -> bool:
        """Apply a new guardrail policy to the live model; False when nothing changed."""
        if policy == self.policy:
            return False
        live = self.current
        new = LiveModel(live.ranker, live.counts, policy, self.pool_size) if live is not None else None
        self.policy = policy            # validated by building the new model first
        if new is not None:
            self.current = new
        return True
