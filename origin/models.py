"""The two-tower retrieval and deep ranker bundles at the origin (``shared.models.ranker_bundle`` layout).

Loaded when the registry has both (``origin.retrieval_model`` / ``origin.ranker_model``); absent -> None
and the origin ranks with the edge scorer as before; present but unloadable -> logged, None, same path.
The models index items by their own row (the export's item order); the origin's catalog maps to it by
item id: a catalog item the models do not know (e.g. added by ``POST /v1/items`` after the export) has
model index -1 and is ranked by the rank stage's rule for unknown items.

A user's history is the purchases ZSET (item -> last purchase ts_ms, written by the stream processor):
one row per item, purchases with the same timestamp share an invoice. The user tower reads the session's
recent items (views, clicks, carts; most recent first) before the purchases, so a session without purchases
still has a tower vector; the ranker's repeat and recency features stay purchases only (a view is not a
purchase).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from strata.origin.catalog import Catalog
from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.models.ranker_bundle import load_retrieval_ranker
from strata.shared.models.ranker_features import Histories, tower_input
from strata.shared.models.retrieval_ranker import RetrievalRanker
from strata.shared.models.vector_index import VectorIndex

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class OriginModels:
    pipeline: RetrievalRanker
    versions: dict[str, str]                 # {"retrieval": version, "ranker": version serving}
    model_ids: np.ndarray                    # str: the models' item ids, row i = model item i
    row_of_model: np.ndarray                 # int64 [n model items] -> catalog row, -1 = not in the catalog
    _model_of_id: dict[str, int] = field(default_factory=dict)
    fallback: dict | None = None             # the current ranker could not load: {"failed", "serving", "reason"}
    index: VectorIndex | None = None         # the item vectors' ANN index (None: exact search)
    category_of: dict[str, int] = field(default_factory=dict)   # catalog category -> the models' category index
    cold: dict[int, np.ndarray] = field(default_factory=dict)   # catalog row -> item-tower vector of an item
    #                                          added after the export (``origin.item_tower``; not in the ranker)
    usable_cache: dict = field(default_factory=dict)            # ``origin.tower_search.usable_items``
    _sentinels: tuple[np.ndarray, np.ndarray] | None = None

    def sentinels(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` evenly spaced model items whose exact scores check an ANN answer (``origin.tower_search``) and
        their vectors, contiguous (gathering them per request cost 0.45 ms at 100k; cached: 0.02 ms;
        the first call's ``n`` holds until ``vectors_changed``)."""
        if self._sentinels is None:
            total = int(self.model_ids.size)
            items = np.unique(np.linspace(0, total - 1, min(n, total)).astype(np.int64))
            self._sentinels = (items, np.ascontiguousarray(self.pipeline.item_vectors[items]))
        return self._sentinels

    def vectors_changed(self) -> None:
        """Item vectors were rewritten (``POST /v1/items``): cached copies are rebuilt on next use."""
        self._sentinels = None

    def model_index(self, catalog: Catalog, rows: np.ndarray) -> np.ndarray:
        """int64 model index of each catalog row, -1 where the models do not know the item."""
        ids = catalog.item_ids
        get = self._model_of_id.get
        return np.fromiter((get(ids[r], -1) for r in rows.tolist()), dtype=np.int64, count=rows.shape[0])

    def history(self, purchases: tuple[tuple[str, int], ...], now_ms: int) -> Histories | None:
        """The user's purchases known to the models, oldest first (the tower reads the most recent last),
        or None when none is known."""
        get = self._model_of_id.get
        known = sorted((ts, idx) for item, ts in purchases if (idx := get(item, -1)) >= 0)
        if not known:
            return None
        ts = np.array([t for t, _ in known], dtype=np.int64)
        item = np.array([i for _, i in known], dtype=np.int64)
        return Histories.single(item, ts, np.minimum(ts, now_ms), now_ms)

    @staticmethod
    def no_history(now_ms: int) -> Histories:
        """A history without purchases (a session's items only): the ranker's repeat features are all 0."""
        empty = np.zeros(0, dtype=np.int64)
        return Histories.single(empty, empty, empty, now_ms)

    def tower_input(self, history: Histories | None, recent: tuple[str, ...]) -> np.ndarray | None:
        """int64 [1, L] for the user tower: the session's recent items (most recent first, unknown ones left
        out), then the purchase history as the tower was trained to read it (``shared.models.ranker_features``),
        each item once; None when neither has an item the models know."""
        pl = self.pipeline
        length, pad = pl.tower.history_len, pl.stats.n_items
        get = self._model_of_id.get
        seq = [k for i in recent if (k := get(i, -1)) >= 0]
        if history is not None:
            bought = tower_input(history, length, pad)[0]
            seq += bought[bought != pad].tolist()
        idx = list(dict.fromkeys(seq))[:length]
        if not idx:
            return None
        out = np.full((1, length), pad, dtype=np.int64)
        out[0, :len(idx)] = idx
        return out

    def model_of(self, keys: list[str]) -> np.ndarray:
        """int64 model index of each item id (-1: unknown)."""
        get = self._model_of_id.get
        return np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))


def load_origin_models(registry: Path | str, retrieval_model: str, ranker_model: str, catalog: Catalog,
                       threads: int = 1) -> OriginModels | None:
    """Both bundles verified and loaded, or None (absent, or not loadable: logged)."""
    root = Path(registry)
    missing = [m for m in (retrieval_model, ranker_model) if not (root / m / B.CURRENT_FILE).is_file()]
    if missing:
        logger.info("no %s bundle in the registry; the edge scorer ranks", " and ".join(missing))
        return None
    try:
        pipeline, ids, manifests = load_retrieval_ranker(root, threads=threads, retrieval_model=retrieval_model,
                                                         ranker_model=ranker_model)
    except BundleError as exc:
        logger.error("retrieval/ranker bundles not loaded; the edge scorer ranks: %s", exc.reason)
        return None
    row = catalog.row
    row_of_model = np.array([row.get(str(i), -1) for i in ids.tolist()], dtype=np.int64)
    if not np.any(row_of_model >= 0):
        logger.error("the retrieval/ranker bundles share no item with the catalog; the edge scorer ranks")
        return None
    model_of_id = {str(i): k for k, i in enumerate(ids.tolist())}
    category_of = _category_map(catalog, row_of_model, pipeline.stats.category)
    versions = {"retrieval": str(manifests["retrieval"].get("version")),
                "ranker": str(manifests["ranker"].get("version"))}
    fallback = manifests.get("ranker_fallback")
    logger.info("origin loaded the two-tower and the deep ranker",
                extra={"model_version": versions, "items": int(ids.size),
                       "in_catalog": int((row_of_model >= 0).sum())})
    return OriginModels(pipeline, versions, ids, row_of_model, model_of_id, fallback, category_of=category_of)


def _category_map(catalog: Catalog, row_of_model: np.ndarray, model_category: np.ndarray) -> dict[str, int]:
    """Catalog category name -> the models' category index, read off the items both know (the retrieval
    bundle stores indices only); a name seen with several indices takes the most common."""
    known = np.flatnonzero(row_of_model >= 0)
    pairs: dict[str, dict[int, int]] = {}
    cats = catalog.categories
    for r, c in zip(row_of_model[known].tolist(), np.asarray(model_category)[known].tolist(), strict=True):
        counts = pairs.setdefault(cats[r], {})
        counts[c] = counts.get(c, 0) + 1
    return {name: max(counts, key=counts.__getitem__) for name, counts in pairs.items()}
