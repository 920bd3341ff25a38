"""The catalog topic's changes over an edge-scorer bundle: what a tier that ranks with the bundle (the edge) needs
to know of ``POST /v1/items`` (``shared.catalog_feed``): stock, category (so banned categories and the diversity cap
hold), age flag and price of known items, and the items added after the export (its pool explores them).

The bundle stays the base: the overlay keeps every change it was given and applies them again over a newly
installed bundle. Restrictions are a floor, as at the origin: an item once age-restricted (in the bundle or by any
record) stays so, and a ban on any category an item ever had still holds after it is re-filed.

New items get the item features the exporter would give them (``shared.ranking.features.item_block``: category,
price, age flag; zero popularity) and a zero interaction vector (no interactions yet: the session-similarity
feature reads 0), like the origin's catalog.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import numpy as np

from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.features import N_CATEGORIES, item_block

logger = logging.getLogger(__name__)
_POPULARITY = N_CATEGORIES + 1          # the item block's popularity column: learned, never changed here


class CatalogOverlay:
    def __init__(self) -> None:
        self.latest: dict[str, ItemUpdate] = {}          # item id -> its latest row (first-seen order)
        self.restricted: set[str] = set()                # ids some record marked age-restricted
        self.categories: dict[str, set[str]] = {}        # id -> every category a record gave it
        self._unknown_warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.latest)

    def add(self, updates: Iterable[ItemUpdate]) -> None:
        for u in updates:
            self.latest[u.item_id] = u
            if u.age_restricted:
                self.restricted.add(u.item_id)
            self.categories.setdefault(u.item_id, set()).add(u.category)

    def apply(self, b: LoadedBundle) -> LoadedBundle:
        """``b`` with every change applied (``b`` itself when there is none). Updates naming a category the
        bundle does not know are left out (logged once per category): the scorer has no feature slot for it."""
        if not self.latest:
            return b
        slot_of = _category_slots(b)
        updates = [u for u in self.latest.values() if self._known_category(u, slot_of)]
        n0 = len(b.item_ids)
        new_ids = [u.item_id for u in updates if u.item_id not in b.index]
        n = n0 + len(new_ids)
        item_ids = b.item_ids + new_ids
        index = dict(b.index)
        index.update((item_id, n0 + i) for i, item_id in enumerate(new_ids))
        categories = list(b.categories) + [""] * len(new_ids)
        age = np.concatenate([b.age_restricted, np.zeros(len(new_ids), dtype=bool)])
        in_stock = np.ones(n, dtype=bool)
        feats = np.concatenate([b.item_features, np.zeros((len(new_ids), b.item_features.shape[1]), np.float32)])
        vecs = np.concatenate([b.item_vectors, np.zeros((len(new_ids), b.item_vectors.shape[1]), np.float32)])
        rows = np.fromiter((index[u.item_id] for u in updates), dtype=np.int64, count=len(updates))
        earlier: dict[int, frozenset[str]] = {}
        for r, u in zip(rows.tolist(), updates, strict=True):
            had = self.categories[u.item_id] | ({b.categories[r]} if r < n0 else set())
            earlier[r] = frozenset(had - {u.category})
            categories[r] = u.category
            age[r] = age[r] or u.item_id in self.restricted
            in_stock[r] = u.stock > 0
        block = item_block(np.array([slot_of[categories[r]] for r in rows.tolist()], dtype=np.int64),
                           np.array([u.price for u in updates], dtype=np.float64),
                           np.zeros(len(updates)), age[rows])
        keep = feats[rows, _POPULARITY].copy()
        feats[rows] = block
        feats[rows, _POPULARITY] = keep
        return dataclasses.replace(
            b, item_ids=item_ids, index=index, categories=categories, age_restricted=age,
            item_features=np.ascontiguousarray(feats), item_vectors=np.ascontiguousarray(vecs), in_stock=in_stock,
            fresh=np.arange(n0, n, dtype=np.int64), earlier_categories={r: c for r, c in earlier.items() if c})

    def _known_category(self, u: ItemUpdate, slot_of: dict[str, int]) -> bool:
        if u.category in slot_of:
            return True
        if u.category not in self._unknown_warned:
            self._unknown_warned.add(u.category)
            logger.warning("catalog update for %s names category %r, which this bundle does not know; left out",
                           u.item_id, u.category)
        return False


def _category_slots(b: LoadedBundle) -> dict[str, int]:
    """Category name -> its one-hot slot in the bundle's item features (read from the features themselves)."""
    slots = b.item_features[:, :N_CATEGORIES].argmax(axis=1).tolist()
    out: dict[str, int] = {}
    for name, slot in zip(b.categories, slots, strict=True):
        out.setdefault(name, slot)
    return out
