"""What tier 2 ranks with: one bundle (``shared.models.scoring_bundle``), its guardrails compiled for the
current policy, its item vectors in a ``VectorIndex``, and the Thompson sampler."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from strata.shared.config import Tier2Settings
from strata.shared.contracts.api import MAX_CANDIDATES, Context
from strata.shared.models.scoring_bundle import LoadedBundle, load_bundle
from strata.shared.models.vector_index import IndexPoint, VectorIndex, open_vector_index
from strata.shared.ranking.bandit import BanditConfig, make_sampler, posterior
from strata.shared.ranking.features import FEATURE_DIM, assemble, context_block
from strata.shared.ranking.guardrails import CatalogGuard, DiversitySelector, Guardrails

logger = logging.getLogger(__name__)
FIELDS = {"category": "keyword", "age_restricted": "integer"}      # flags as 0/1 integers (Qdrant Edge)
BATCH = 2000


def index_items(bundle: LoadedBundle, index: VectorIndex) -> int:
    """Upsert every item with a vector (an item never interacted with has none: it is not retrieved)."""
    rows = np.flatnonzero(np.any(bundle.item_vectors != 0, axis=1)).tolist()
    for lo in range(0, len(rows), BATCH):
        index.upsert([IndexPoint(bundle.item_ids[r], bundle.item_vectors[r],
                                 {"category": bundle.categories[r], "age_restricted": int(bundle.age_restricted[r])})
                      for r in rows[lo:lo + BATCH]])
    return len(rows)


class Tier2Model:
    def __init__(self, bundle: LoadedBundle, policy: Guardrails, index: VectorIndex, bandit: BanditConfig,
                 retrieve: int, shard_dir: Path | None = None) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.policy = policy
        self.index = index
        self.bandit = bandit
        self.retrieve = retrieve
        self.guard = CatalogGuard(policy, bundle.item_ids, bundle.categories, bundle.age_restricted)
        self.diversity = DiversitySelector(policy.max_per_category, policy.diversity_window)
        self.rng = make_sampler(bandit.seed)
        # the popular pools, as many as ANN would give (the edge's pool_size), filtered once per age state
        self._pools = {(seg, age): self.guard.clean(rows[:retrieve], age) for seg, rows in bundle.pools.items()
                       for age in (False, True)}
        self._ctx: dict[tuple[str, str, int], np.ndarray] = {}
        self._buf = np.empty((MAX_CANDIDATES + retrieve + 1000, FEATURE_DIM), dtype=np.float32)
        self._shard_dir = shard_dir

    def pool(self, channel: str, age_verified: bool) -> np.ndarray:
        """The channel's popular items (else the default segment's) that the guardrails allow."""
        rows = self._pools.get((channel, age_verified))
        return rows if rows is not None else self._pools[("default", age_verified)]

    def lookup(self, ids: list[str]) -> np.ndarray:
        index = self.bundle.index
        return np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def posterior(self, rows: np.ndarray, ctx: Context, vec: np.ndarray | None, clicks: np.ndarray | None,
                  imps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Beta posterior per candidate row (-1: unknown to the bundle, the cold prior): the ONNX click
        probability from ``shared.ranking.features`` rows as the prior, the slot's counts as the evidence."""
        b = self.bundle
        known = rows >= 0
        p = np.full(rows.shape[0], self.bandit.cold_prior, dtype=np.float64)
        if known.any():
            kr = rows[known]
            sims = None if vec is None else b.item_vectors[kr] @ vec
            key = (ctx.channel, ctx.device, ctx.hour)
            block = self._ctx.get(key)
            if block is None:
                block = self._ctx[key] = context_block(ctx.channel, ctx.device, ctx.hour)
            p[known] = b.scorer.score(assemble(b.item_features[kr], block, sims, out=self._buf))
        return posterior(p, clicks, imps, self.bandit.n0)

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
