"""The origin's catalog: one row per item with every fact the pipeline and the reasoners may use.

Loaded from the edge-scorer bundle (``shared.models.bundle`` layout) and grown by ``POST /v1/items``. Rows are
appended, never reordered, so a row number stays valid; an upsert of a known id rewrites its row. The
guardrail filter (``shared.ranking.guardrails.CatalogGuard``) is compiled per catalog state, so ``version``
changes on every write and consumers rebuild what depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.cold_placement import category_centroids
from strata.shared.ranking.features import item_block

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Catalog:
    def __init__(self, item_ids: Sequence[str], titles: Sequence[str], categories: Sequence[str],
                 category_index: dict[str, int], prices: np.ndarray, popularity: np.ndarray,
                 age_restricted: np.ndarray, stock: np.ndarray, features: np.ndarray, vectors: np.ndarray) -> None:
        self.item_ids = list(item_ids)
        self.titles = list(titles)
        self.categories = list(categories)
        self.category_index = dict(category_index)        # name -> scorer one-hot slot
        # own, writable copies: ``upsert`` writes rows in place (a bundle's arrays may be read-only views)
        self.prices = np.array(prices, dtype=np.float64)
        self.popularity = np.array(popularity, dtype=np.float64)
        self.age_restricted = np.array(age_restricted, dtype=bool)
        self.stock = np.array(stock, dtype=np.int64)
        self.features = np.array(features, dtype=np.float32, order="C")
        self.vectors = np.array(vectors, dtype=np.float32, order="C")
        self.row = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.version = 0
        self._vocab: tuple[int, frozenset[str]] | None = None
        self._tokens: dict[str, set[int]] = {}
        for i in range(len(self.item_ids)):
            self._index_text(i)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.category_index))

    def _index_text(self, i: int) -> None:
        for w in set(words(self.titles[i])) | set(words(self.categories[i])):
            self._tokens.setdefault(w, set()).add(i)

    def _unindex_text(self, i: int) -> None:
        for w in set(words(self.titles[i])) | set(words(self.categories[i])):
            rows = self._tokens.get(w)
            if rows is not None:
                rows.discard(i)

    def text_matches(self, query_words: Sequence[str]) -> dict[int, int]:
        """row -> how many distinct query words its title or category contains."""
        hits: dict[int, int] = {}
        for w in dict.fromkeys(query_words):
            for r in self._tokens.get(w, ()):
                hits[r] = hits.get(r, 0) + 1
        return hits

    def vocabulary(self) -> frozenset[str]:
        """Every word of every title (what grounding checks an LLM's words against); cached per version."""
        cached = self._vocab
        if cached is None or cached[0] != self.version:
            vocab = frozenset(w for t in self.titles for w in words(t))
            self._vocab = cached = (self.version, vocab)
        return cached[1]

    def category_centroids(self, categories: Sequence[str]) -> dict[str, np.ndarray]:
        """Mean direction of each category's embedded items (the vector a cold item starts from), all in one
        pass over the catalog (placing 68k vector-less items at start scanned it once per category and batch:
        6.5 s at 100k)."""
        out = {}
        dim = self.vectors.shape[1]
        for c, v in category_centroids(self.vectors, self.categories, categories).items():
            if v is None:       # an unseen category: a fixed direction per category slot
                v = np.zeros(dim, dtype=np.float32)
                v[self.category_index[c] % dim] = 1.0
            out[c] = v
        return out

    def upsert(self, updates: Sequence[ItemUpdate]) -> list[int]:
        """Apply updates; returns their rows. New items start with zero popularity and a zero vector (no
        interactions: the scorer reads that as no evidence; the vector index places them at their
        category's centroid); known items keep their learned vector and popularity."""
        rows = []
        new_vecs = []
        for u in updates:
            i = self.row.get(u.item_id)
            if i is None:
                i = len(self.item_ids)
                self.item_ids.append(u.item_id)
                self.titles.append(u.title)
                self.categories.append(u.category)
                self.row[u.item_id] = i
                new_vecs.append(np.zeros(self.vectors.shape[1], dtype=np.float32))   # no interactions yet
            else:
                self._unindex_text(i)
                self.titles[i] = u.title
                self.categories[i] = u.category
            rows.append(i)
        n = len(self.item_ids)
        grow = n - self.prices.shape[0]
        if grow:
            self.prices = np.concatenate([self.prices, np.zeros(grow)])
            self.popularity = np.concatenate([self.popularity, np.zeros(grow)])
            self.age_restricted = np.concatenate([self.age_restricted, np.zeros(grow, dtype=bool)])
            self.stock = np.concatenate([self.stock, np.zeros(grow, dtype=np.int64)])
            self.vectors = np.concatenate([self.vectors, np.asarray(new_vecs, dtype=np.float32)])
            self.features = np.concatenate([self.features, np.zeros((grow, self.features.shape[1]), np.float32)])
        idx = np.asarray(rows, dtype=np.int64)
        by_row = {r: u for r, u in zip(rows, updates, strict=True)}
        for r, u in by_row.items():
            self.prices[r] = u.price
            self.stock[r] = u.stock
            self.age_restricted[r] = u.age_restricted
            self._index_text(r)
        cat_idx = np.array([self.category_index[self.categories[r]] for r in idx.tolist()])
        self.features[idx] = item_block(cat_idx, self.prices[idx], self.popularity[idx], self.age_restricted[idx])
        self.version += 1
        return rows

    def facts(self, row: int) -> dict:
        """What a reasoner may say about an item: catalog facts only."""
        return {"item_id": self.item_ids[row], "title": self.titles[row], "category": self.categories[row],
                "price": round(float(self.prices[row]), 2)}
