"""What one request ranks with: the bundle's catalog, ranker and pools, the vector index, the text search
(when the registry has a text encoder), the two-tower and deep ranker (when it has them), and the
guardrail filter compiled for the catalog's current state and the configured policy.

``POST /v1/items`` writes the catalog and the index; the guard is recompiled lazily when the catalog's
``version`` moved (a few milliseconds for 12k items), so a new item is checked like every other.

Restrictions are a floor the API cannot lower: an update never clears an item's age flag (it stays age-gated),
and an item that was ever in a category (by its bundle or an earlier update) keeps that category's ban when it is
moved out of it; moving an item into a banned category bans it at once. The expensive part of an update (the
text encoder) runs off the event loop (``embed``); the catalog and index writes (``upsert_items``) on it.
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
from strata.shared.models import text_encoder as T
from strata.shared.models.text_encoder import tower_text
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
        self.earlier_categories: dict[int, set[str]] = {}     # row -> categories it was moved out of

    @property
    def guard(self) -> CatalogGuard:
        c = self.catalog
        if self._guard is None or self._guard_version != c.version:
            self._guard = CatalogGuard(self.policy, c.item_ids, self._guard_categories(), c.age_restricted)
            self._guard_version = c.version
        return self._guard

    def _guard_categories(self) -> list[str]:
        """The catalog's categories, except that a row moved out of a banned category is guarded as in it."""
        cats = self.catalog.categories
        banned = set(self.policy.banned_categories)
        if not banned or not self.earlier_categories:
            return cats
        cats = list(cats)
        for r, earlier in self.earlier_categories.items():
            hit = sorted(earlier & banned)
            if hit and cats[r] not in banned:
                cats[r] = hit[0]
        return cats

    def floor(self, updates: list[ItemUpdate]) -> list[str]:
        """Apply the restriction floor to ``updates`` in place; the ids whose restriction was kept."""
        cat = self.catalog
        kept = []
        for u in updates:
            r = cat.row.get(u.item_id)
            if r is None:
                continue
            if cat.age_restricted[r] and not u.age_restricted:
                u.age_restricted = True
                kept.append(u.item_id)
            if u.category != cat.categories[r]:
                self.earlier_categories.setdefault(r, set()).add(cat.categories[r])
                if cat.categories[r] in self.policy.banned_categories or \
                        self.earlier_categories[r] & set(self.policy.banned_categories):
                    kept.append(u.item_id)
        return list(dict.fromkeys(kept))

    def embed(self, updates: list[ItemUpdate]) -> Embedded | None:
        """The text encoder's vectors for ``updates`` (what makes an upsert slow). Reads nothing the event loop
        writes: safe in a worker thread."""
        encoder = self.text.encoder if self.text is not None else None
        if encoder is None:
            return None
        texts = [T.item_text(u.title, u.category) for u in updates]
        titles = list(dict.fromkeys(tower_text(u.title) for u in updates)) if self.models is not None else []
        vecs = encoder.encode(texts + titles)
        return Embedded(vecs[:len(texts)], dict(zip(titles, vecs[len(texts):], strict=True)), encoder)

    def pool(self, channel: str) -> np.ndarray:
        rows = self.pools.get(channel)
        return rows if rows is not None and rows.shape[0] else self.pools["default"]

    def upsert_items(self, updates: list[ItemUpdate], embedded: Embedded | None = None, *,
                     floored: bool = False) -> list[int]:
        """Catalog first (facts, features), then the indexes (the text one embeds the new text, unless
        ``embed`` did): searchable when this returns. The restriction floor applies (``floor``; ``floored``:
        the caller applied it)."""
        if not floored:
            self.floor(updates)
        cat = self.catalog
        before = {u.item_id: (cat.titles[r], cat.categories[r], float(cat.prices[r]))
                  for u in updates if (r := cat.row.get(u.item_id)) is not None}
        rows = cat.upsert(updates)
        self.index.upsert(item_points(cat, rows))
        if self.models is not None:     # the item tower embeds new and changed items; stock, age, category move
            refresh = np.array([before.get(cat.item_ids[r]) != (cat.titles[r], cat.categories[r], float(cat.prices[r]))
                                for r in rows], dtype=bool)
            update_tower_items(self.models, cat, np.asarray(rows, dtype=np.int64), refresh,
                               embedded if embedded is not None else
                               self.text.encoder if self.text is not None else None)
        if self.text is not None:
            self.text.upsert(self.catalog, rows, embedded.text if embedded is not None else None)
        return rows


class Embedded:
    """Text vectors computed off the event loop for one chunk of updates, in their order, plus the item tower's
    title vectors by title; ``encode`` answers the tower from them (the live encoder for anything else)."""

    def __init__(self, text: np.ndarray, titles: dict[str, np.ndarray], encoder) -> None:
        self.text = text
        self.titles = titles
        self.encoder = encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.titles]
        if missing:
            self.titles.update(zip(missing, self.encoder.encode(missing), strict=True))
        return np.stack([self.titles[t] for t in texts]) if texts else self.encoder.encode([])
