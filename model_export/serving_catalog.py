"""A real catalog's item tables for the edge-scorer bundle (``strata export --data online-retail PATH``).

The edge scorer's click model needs impressions and clicks, which purchase logs do not have, so its
weights still come from the synthetic world; what the edge SERVES comes from the real data: the item
table (ids, titles, derived categories named by their titles' most distinctive words, median prices, invoice popularity), the ``shared.ranking.features`` item
rows built from them, the SVD item vectors of the customer x item purchases and the popular pools. The
scorer's features are generic (category one-hot, log price, log popularity, age flag, context, session
similarity), so the same graph scores the real catalog; no item is age-restricted in this data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.model_export.datasets.item_categories import category_names
from strata.model_export.datasets.online_retail import RetailLog
from strata.model_export.registry import top_pools
from strata.shared.contracts.api import CHANNELS
from strata.shared.ranking.features import N_CATEGORIES, item_block


@dataclass(frozen=True, slots=True)
class ServingCatalog:
    columns: dict[str, np.ndarray]  # items.parquet columns (the edge-scorer layout)
    item_features: np.ndarray  # float32 [n, ITEM_DIM]
    item_vectors: np.ndarray  # float32 [n, EMBED_DIM]
    pools: dict[str, list[str]]
    source: dict

    @property
    def n_items(self) -> int:
        return int(self.item_features.shape[0])


def retail_serving_catalog(log: RetailLog, seed: int = 7) -> ServingCatalog:
    n = log.item_id.size
    category = np.asarray(log.category, dtype=np.int64)
    if category.size and category.max() >= N_CATEGORIES:
        raise ValueError(f"derived categories must be < {N_CATEGORIES} (shared.ranking.features one-hot)")
    names = category_names(log.title, category)  # readable: the clusters' most distinctive title words
    age = np.zeros(n, dtype=np.int8)
    popularity = log.popularity.astype(np.float64)
    columns = {"item_id": log.item_id.astype(str), "category": names[category],
               "category_idx": category.astype(np.int32), "brand": np.full(n, "", dtype=object).astype(str),
               "price": log.price.astype(np.float64), "title": log.title.astype(str), "age_restricted": age,
               "popularity": popularity}
    features = item_block(category, log.price, popularity, age)
    vectors = log.item_vectors(seed=seed).astype(np.float32)
    pools = top_pools(log.item_id.astype(str), popularity, {ch: popularity for ch in CHANNELS})
    source = {"source": "online-retail", "sha256": log.sha256, "items": int(n),
              "note": "item tables from the real data; click model weights from the synthetic world"}
    return ServingCatalog(columns, features, vectors, pools, source)
