"""Item-tower vectors for catalog updates (``POST /v1/items``), so a new item can come from the two-tower.

The recipe the export used for every item, run at serving time without torch: the title through the
serving text encoder as ``shared.models.text_encoder.tower_text(title)``, the category as the models' category
index (``OriginModels.category_of``; unknown: -1), the price (bucketed by the item tower), and the model's
item index for items the export knew (-1 for a new one) -> ``ItemTowerModel.vectors``. A known item whose
title, category or price changed gets its vector recomputed the same way, so the two-tower and the ranker's
tower score follow the new facts.

Not possible without the retrieval bundle's item tower, or without a text encoder when the tower reads
text: those items stay out of the two-tower (logged), as before this existed.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from strata.origin.catalog import Catalog
from strata.origin.models import OriginModels
from strata.shared.models.text_encoder import tower_text

logger = logging.getLogger(__name__)


class TitleEncoder(Protocol):
    """What the item tower needs of a text encoder: ``shared.models.text_encoder.TextEncoder``, or the vectors
    of one upsert computed off the event loop (``origin.state.Embedded``)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


def tower_vectors(models: OriginModels, catalog: Catalog, rows: np.ndarray, items: np.ndarray,
                  encoder: TitleEncoder | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(float32 [n, dim] item vectors, float32 [n, text_dim] title vectors) of catalog ``rows`` whose model
    indices are ``items`` (-1: new), or None when the models cannot embed them here (logged)."""
    tower = models.pipeline.item_tower
    if tower is None:
        logger.warning("the retrieval bundle has no item tower; %d updated items keep their two-tower vector "
                       "(new ones stay out of the two-tower)", rows.size)
        return None
    titles = [tower_text(catalog.titles[r]) for r in rows.tolist()]
    if tower.text_dim:
        if encoder is None:
            logger.warning("no text encoder loaded: %d updated items are not embedded by the item tower "
                           "(new ones stay out of the two-tower)", rows.size)
            return None
        text = np.asarray(encoder.encode(titles), dtype=np.float32)
    else:
        text = np.zeros((rows.size, 0), dtype=np.float32)
    category = np.array([models.category_of.get(catalog.categories[r], -1) for r in rows.tolist()], dtype=np.int64)
    vectors = np.asarray(tower.vectors(category, catalog.prices[rows], text, items), dtype=np.float32)
    if vectors.shape != (rows.size, models.pipeline.item_vectors.shape[1]) or not np.all(np.isfinite(vectors)):
        logger.error("the item tower returned shape %s or non-finite values; items not re-embedded", vectors.shape)
        return None
    return vectors, text
