"""The per-request ranking a competent user writes first, shared by both baseline servers.

Same bundle and the same feature code as the edge (shared.ranking.features), so the baselines run the same
model on the same inputs: map ids -> rows, build features, one onnxruntime session with one intra-op
thread, Thompson sampling with the model as prior (no observed counts: there is no store), top-k.
No caches, no precomputation beyond loading the bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

from strata.shared.models import bundle as B
from strata.shared.ranking.bandit import BanditConfig, posterior, thompson_topk
from strata.shared.ranking.features import assemble, context_block


@dataclass(slots=True)
class Ranked:
    item_ids: list[str]
    scores: list[float]
    explored: list[bool]


class NaiveRanker:
    """Loads the CURRENT bundle of ``model`` once; ``rank`` does all the work per call."""

    def __init__(self, registry: str | Path, model: str = "edge-scorer", seed: int = 0,
                 bandit: BanditConfig = BanditConfig()) -> None:
        self.version = B.read_current(registry, model)
        path = Path(registry) / model / self.version
        ids = pq.read_table(path / B.ITEMS_FILE, columns=["item_id"]).column("item_id").to_pylist()
        self.index = {item_id: i for i, item_id in enumerate(ids)}
        self.item_features = np.load(path / B.ITEM_FEATURES_FILE)
        self.item_vectors = np.load(path / B.ITEM_VECTORS_FILE)  # loaded like the edge; no sessions here
        self.default_pool = json.loads((path / B.POOLS_FILE).read_text())["default"][:200]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path / B.MODEL_FILE), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.bandit = bandit
        self.rng = np.random.default_rng(seed)

    def rank(self, candidates: list[str] | None, channel: str, device: str, hour: int, k: int) -> Ranked:
        ids = candidates if candidates else self.default_pool
        rows = np.array([self.index.get(i, -1) for i in ids], dtype=np.int64)
        known = rows >= 0
        p = np.full(len(ids), self.bandit.cold_prior, dtype=np.float32)
        if known.any():
            x = assemble(self.item_features[rows[known]], context_block(channel, device, hour), None)
            p[known] = self.session.run([B.OUTPUT_NAME], {B.INPUT_NAME: x})[0].reshape(-1)
        zeros = np.zeros(len(ids))
        alpha, beta = posterior(p, zeros, zeros, self.bandit.n0)
        d = thompson_topk(alpha, beta, k, self.bandit.budget_slots(k), self.rng)
        order = d.order.tolist()
        return Ranked([ids[j] for j in order], d.theta[order].tolist(), d.explored.tolist())
