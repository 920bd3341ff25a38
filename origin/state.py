"""What one request ranks with: the bundle's catalog, ranker and pools, the vector index, the text search
(when the registry has a text encoder), the two-tower and deep ranker (when it has them), and the
guardrail filter compiled for the catalog's current state and the configured policy.

``POST /v1/items`` writes the catalog and the index; the guard is recompiled lazily when the catalog's
``version`` moved (a few milliseconds for 12k items), so a new item is checked like every other.
"""

from __future__ import annotations

import numpy as np

from strata.origin.bundle import OriginBundle
from strata.origin.catalog import Catalog
from strata.origin.covisitation import Covisitation
from strata.origin.models import OriginModels
from strata.origin.retrieval import item_points
from strata.origin.text_search import TextSearch
from strata.origin.tower_index import update_tower_items
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.vector_index import VectorIndex
from strata.shared.ranking.guardrails import CatalogGuard, DiversitySelector, Guardrails


class OriginState:
    def __init__(self, bundle: OriginBundle, index: VectorIndex, policy: Guardrails,
                 text: TextSearch | None = None, covisitation: Covisitation | None = None,
                 models: OriginModels | None = None) -> None:
        self.version = bundle.version
        self.catalog: Catalog = bundle.catalog
        self.ranker = bundle.ranker
        self.index = index
        self.text = text
        self.covisitation = covisitation
        self.models = models            # the two-tower + deep ranker, when the registry has them
        self.policy = policy
        self.diversity = DiversitySelector(policy.max_per_category, policy.diversity_window)
        row = self.catalog.row
        self.pools = {seg: np.array([row[i] for i in ids if i in row], dtype=np.int64)
                      for seg, ids in bundle.pools.items()}
        self._guard: CatalogGuard | None = None
        self._guard_version = -1

    @property
    def guard(self) -> CatalogGuard:
        c = self.catalog
        if self._guard is None or self._guard_version != c.version:
            self._guard = CatalogGuard(self.policy, c.item_ids, c.categories, c.age_restricted)
            self._guard_version = c.version
        return self._guard

    def pool(self, channel: str) -> np.ndarray:
        rows = self.pools.get(channel)
        return rows if rows is not None and rows.shape[0] else self.pools["default"]

    def upsert_items(self, updates: list[ItemUpdate]) -> list[int]:
        """Catalog first (facts, features), then the indexes (the text one embeds the new text): searchable
        when this returns."""
        cat = self.catalog
        before = {u.item_id: (cat.titles[r], cat.categories[r], float(cat.prices[r]))
                  for u in updates if (r := cat.row.get(u.item_id)) is not None}
        rows = cat.upsert(updates)
        self.index.upsert(item_points(cat, rows))
        if self.models is not None:     # the item tower embeds new and changed items; stock, age, category move
            refresh = np.array([before.get(cat.item_ids[r]) != (cat.titles[r], cat.categories[r], float(cat.prices[r]))
                                for r in rows], dtype=bool)
            update_tower_items(self.models, cat, np.asarray(rows, dtype=np.int64), refresh,
                               self.text.encoder if self.text is not None else None)
        if self.text is not None:
            self.text.upsert(self.catalog, rows)
        return rows
