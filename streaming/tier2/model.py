"""What tier 2 ranks with: the kernel's ``RankingModel`` over one bundle (``shared.models.scoring_bundle``)
under the current guardrail policy, plus the bundle's item vectors in a ``VectorIndex`` for ANN candidates."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from strata.shared.config import Tier2Settings
from strata.shared.contracts.api import MAX_CANDIDATES
from strata.shared.models.catalog_overlay import CatalogOverlay
from strata.shared.models.scoring_bundle import LoadedBundle, load_bundle
from strata.shared.models.vector_index import FieldType, IndexPoint, VectorIndex, open_vector_index
from strata.shared.ranking.bandit import BanditConfig
from strata.shared.ranking.guardrails import Guardrails
from strata.shared.ranking.model import RankingModel
from strata.shared.ranking.ranker import Ranker

logger = logging.getLogger(__name__)
FIELDS: dict[str, FieldType] = {"category": "keyword", "age_restricted": "integer"}   # flags as 0/1 integers
BATCH = 2000


def index_items(bundle: LoadedBundle, index: VectorIndex) -> int:
    """Upsert every item with a vector (an item never interacted with has none: it is not retrieved)."""
    rows = np.flatnonzero(np.any(bundle.item_vectors != 0, axis=1)).tolist()
    for lo in range(0, len(rows), BATCH):
        index.upsert([IndexPoint(bundle.item_ids[r], bundle.item_vectors[r],
                                 {"category": bundle.categories[r], "age_restricted": int(bundle.age_restricted[r])})
                      for r in rows[lo:lo + BATCH]])
    return len(rows)


class Tier2Model(RankingModel):
    """``retrieve``: ANN candidates per request, and the size of the popular pools (as many as ANN would give)."""

    __slots__ = ("index", "retrieve", "base", "_shard_dir")

    def __init__(self, bundle: LoadedBundle, policy: Guardrails, index: VectorIndex, bandit: BanditConfig,
                 retrieve: int, shard_dir: Path | None = None, base: LoadedBundle | None = None) -> None:
        super().__init__(Ranker(bundle, bandit, max(MAX_CANDIDATES, retrieve)), policy, retrieve)
        self.index = index
        self.retrieve = retrieve
        self.base = base if base is not None else bundle     # the bundle as exported (before catalog changes)
        self._shard_dir = shard_dir

    def with_catalog(self, overlay: CatalogOverlay) -> Tier2Model:
        """The same bundle and index with the catalog topic's changes applied; it takes over the index (this
        model must then be dropped, not closed). The index keeps the exported items' payloads: the guardrails,
        which read the changes, have the last word on every candidate."""
        new = Tier2Model(overlay.apply(self.base), self.policy, self.index, self.ranker.bandit, self.retrieve,
                         self._shard_dir, base=self.base)
        self._shard_dir = None
        return new

    def close(self) -> None:
        try:
            self.index.close()
        finally:
            if self._shard_dir is not None:
                shutil.rmtree(self._shard_dir, ignore_errors=True)
                self._shard_dir = None


def load_model(cfg: Tier2Settings, registry: str, model: str, policy: Guardrails) -> Tier2Model:
    """Load the CURRENT bundle (checksums verified) and index its item vectors."""
    t0 = time.perf_counter()
    bundle = load_bundle(registry, model, ort_threads=cfg.ort_threads)
    vi = cfg.vector_index
    shard_dir = None
    location = vi.url
    if vi.backend == "edge" and location is None:       # a private shard (a shard has exactly one opener)
        shard_dir = Path(tempfile.mkdtemp(prefix="strata-tier2-index-"))
        location = str(shard_dir / "items")
    elif location is None:                              # Qdrant without a URL: in memory (as the origin's index)
        location = ":memory:"
    try:
        index = open_vector_index(vi.backend, location, dim=bundle.item_vectors.shape[1], fields=FIELDS,
                                  collection=f"tier2-{bundle.version}")
        n = index_items(bundle, index)
    except BaseException:
        if shard_dir is not None:
            shutil.rmtree(shard_dir, ignore_errors=True)
        raise
    logger.info("tier-2 model loaded", extra={"model_version": bundle.version, "indexed": n,
                                               "backend": vi.backend, "seconds": round(time.perf_counter() - t0, 3)})
    return Tier2Model(bundle, policy, index, cfg.bandit, cfg.retrieve, shard_dir)
