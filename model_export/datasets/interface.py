"""The one dataset interface Strata's retrieval and ranking models train through.

A dataset is customers, a catalog (items with text, category and price) and timestamped baskets;
``baskets()`` returns them as ``evaluation.baskets.Baskets`` (distinct (invoice, item) pairs with the
invoice time and a context index). The synthetic world (``SyntheticPurchases``: a session's purchases
are its basket, the channel its context) and UCI Online Retail (``OnlineRetail``: an invoice is a
basket, the country its context) both implement it, so ``model_export.retail_models`` and
``strata export`` run the same training code on either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from strata.model_export.evaluation.baskets import Baskets, Catalog, baskets_from_retail, make_baskets
from strata.model_export.world import World, WorldConfig, generate_world
from strata.shared.contracts.api import EVENT_TYPES


@runtime_checkable
class PurchaseDataset(Protocol):
    name: str

    def baskets(self) -> Baskets: ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance for a bundle manifest."""
        ...

    def item_labels(self, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
        """(category name, age-restricted 0/1) per item of ``catalog``: what the serving catalog calls them,
        so the retrieval bundle's ANN shard carries the payload the origin filters on."""
        ...


@dataclass(slots=True)
class OnlineRetail:
    path: Path
    seed: int = 7
    name: str = "online-retail"
    _report: dict[str, Any] = field(default_factory=dict)

    def baskets(self) -> Baskets:
        from strata.model_export.datasets.online_retail import load_online_retail

        log = load_online_retail(self.path, seed=self.seed)
        self._report = {"source": self.name, "sha256": log.sha256, "rows_out": log.report.get("rows_out"),
                        "items": int(log.item_id.size), "customers": int(log.customer_id.size),
                        "invoices": int(log.invoice_id.size)}
        return baskets_from_retail(log)

    def describe(self) -> dict[str, Any]:
        return dict(self._report) or {"source": self.name, "path": str(self.path)}

    def item_labels(self, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
        # the names model_export.serving_catalog gives the derived clusters; nothing is age-restricted
        from strata.model_export.datasets.item_categories import category_names

        names = category_names(catalog.title, catalog.category)
        return names[catalog.category], np.zeros(catalog.n_items, dtype=np.int8)


@dataclass(slots=True)
class SyntheticPurchases:
    """The synthetic world's purchase events as baskets (one per session with a purchase)."""

    config: WorldConfig = field(default_factory=WorldConfig)
    world: World | None = None
    name: str = "synthetic-world"

    def baskets(self) -> Baskets:
        world = self.world if self.world is not None else generate_world(self.config)
        self.world = world
        s, cat = world.sessions, world.catalog
        bought = s.ev_type == EVENT_TYPES.index("purchase")
        session = s.ev_session[bought]
        catalog = Catalog(cat.item_id, cat.title, cat.price.astype(np.float64), cat.category.astype(np.int64))
        return make_baskets(s.user[session], s.ev_item[bought], session, s.ev_ts_ms[bought], s.channel[session],
                            catalog, int(world.users.user_id.size))

    def describe(self) -> dict[str, Any]:
        fingerprint = self.world.fingerprint() if self.world is not None else None
        return {"source": self.name, "seed": self.config.seed, "n_items": self.config.n_items,
                "n_users": self.config.n_users, "n_sessions": self.config.n_sessions, "fingerprint": fingerprint}

    def item_labels(self, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
        world = self.world if self.world is not None else generate_world(self.config)
        cat = world.catalog
        if not np.array_equal(cat.item_id, catalog.item_id):
            raise ValueError("the catalog is not this world's")
        return cat.category_names, cat.age_restricted.astype(np.int8)
