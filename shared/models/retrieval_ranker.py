"""Retrieve and rank with the exported models: user tower (ONNX) -> candidates -> ranker (ONNX).

This is the served path of the two-tower + deep ranker, used unchanged by offline evaluation and by the
origin: onnxruntime sessions built once with explicit threads, numpy over a batch of histories, the
feature rows from ``shared.models.ranker_features``. No torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models.onnx import open_session
from strata.shared.models.ranker_features import (
    N_FEATURES,
    Histories,
    ItemStats,
    candidates,
    ranker_rows,
    summarize,
    tower_input,
)

logger = logging.getLogger(__name__)

HISTORY_INPUT, USER_OUTPUT = "history", "user_vector"
FEATURES_INPUT, SCORE_OUTPUT = "features", "score"
ITEM_INPUTS, ITEM_OUTPUT = ("item", "category", "price_bucket", "text"), "item_vector"


@dataclass(frozen=True, slots=True)
class CandidateSizes:
    tower: int = 100  # two-tower nearest items
    covis: int = 100  # best co-visited items
    past: int = 200  # the customer's own items (best by invoices, then recency)
    popular: int = 50
    fresh: int = 50  # what new customers start with in the last days of training (ItemStats.fresh)


@dataclass(frozen=True, slots=True)
class Ranked:
    """CSR per query: candidates rows ptr[q]:ptr[q+1] with their ranker scores (unsorted).

    ``scored_by`` says which model scored: "ranker", "previous_ranker" (the current one failed) or
    "retrieval_order" (every ranker failed: the two-tower score ranks)."""

    ptr: np.ndarray
    item: np.ndarray
    score: np.ndarray
    scored_by: str = "ranker"


class UserTowerModel:
    """The user/session tower: histories -> L2-normalised user vectors."""

    def __init__(self, path: Path | str, threads: int = 1) -> None:
        self._sess = open_session(path, threads)
        shape = self._sess.get_inputs()[0].shape
        if [i.name for i in self._sess.get_inputs()] != [HISTORY_INPUT] or not isinstance(shape[1], int):
            raise BundleError(f"{path}: expected one input {HISTORY_INPUT!r} int64 [N, L]")
        self.history_len = int(shape[1])

    def vectors(self, history: np.ndarray) -> np.ndarray:
        return self._sess.run([USER_OUTPUT], {HISTORY_INPUT: np.ascontiguousarray(history, dtype=np.int64)})[0]


class ItemTowerModel:
    """The item tower: (category, price, text vector[, model item index]) -> L2-normalised item vectors.

    Embeds items the export never saw (``item`` -1) into the two-tower space; ``price_edges`` are the
    bundle's ``price_bucket_edges_log`` (bucket = number of edges <= log price)."""

    def __init__(self, path: Path | str, price_edges: np.ndarray, threads: int = 1) -> None:
        self._sess = open_session(path, threads)
        inputs = {i.name: i for i in self._sess.get_inputs()}
        text = inputs.get(ITEM_INPUTS[3])
        # a model trained without text has no text input (the exporter prunes it)
        if set(inputs) - set(ITEM_INPUTS) or set(ITEM_INPUTS[:3]) - set(inputs) or \
                (text is not None and not isinstance(text.shape[1], int)):
            raise BundleError(f"{path}: expected inputs {ITEM_INPUTS} (text float32 [N, dim])")
        self._names = set(inputs)
        self.text_dim = int(text.shape[1]) if text is not None else 0
        self.price_edges = np.asarray(price_edges, dtype=np.float64)

    def vectors(self, category: np.ndarray, price: np.ndarray, text: np.ndarray,
                item: np.ndarray | None = None) -> np.ndarray:
        """``category`` int (model category index; -1 or out of range: unknown), ``price`` float, ``text``
        float32 [N, text_dim]; ``item`` the model's item index or -1 (default: every item unknown)."""
        n = int(np.asarray(category).shape[0])
        text = np.ascontiguousarray(text, dtype=np.float32).reshape(n, self.text_dim)
        bucket = np.searchsorted(self.price_edges, np.log(np.maximum(np.asarray(price, np.float64), 0.01)),
                                 side="right")
        item = np.full(n, -1, np.int64) if item is None else np.asarray(item, np.int64)
        feeds = {"item": item, "category": np.asarray(category, np.int64), "price_bucket": bucket.astype(np.int64),
                 "text": text}
        return self._sess.run([ITEM_OUTPUT], {k: v for k, v in feeds.items() if k in self._names})[0]


class RankerModel:
    def __init__(self, path: Path | str, threads: int = 1) -> None:
        self._sess = open_session(path, threads)
        shape = self._sess.get_inputs()[0].shape
        if [i.name for i in self._sess.get_inputs()] != [FEATURES_INPUT] or shape[1] != N_FEATURES:
            raise BundleError(f"{path}: expected one input {FEATURES_INPUT!r} float32 [N, {N_FEATURES}]")

    def score(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run([SCORE_OUTPUT], {FEATURES_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


class RetrievalRanker:
    """Two-tower retrieval + co-visitation + past items + popular, scored by the deep ranker."""

    def __init__(self, tower: UserTowerModel, item_vectors: np.ndarray, ranker: RankerModel, stats: ItemStats,
                 sizes: CandidateSizes = CandidateSizes(), previous: RankerModel | None = None,
                 item_tower: ItemTowerModel | None = None) -> None:
        if item_vectors.shape[0] != stats.n_items:
            raise BundleError(f"{item_vectors.shape[0]} item vectors for {stats.n_items} items")
        self.tower, self.item_vectors, self.ranker, self.stats, self.sizes = tower, item_vectors, ranker, stats, sizes
        self.previous = previous  # the registry's previous ranker version: the first fallback
        self.item_tower = item_tower  # embeds items the export never saw (None: an older bundle without it)
        self.failures = 0

    def tower_top(self, user: np.ndarray, n: int) -> np.ndarray:
        """int64 [Q, n] nearest items by dot product (exact; the origin's ANN index does this at scale)."""
        n = min(n, self.stats.n_items)
        if n <= 0:
            return np.zeros((user.shape[0], 0), dtype=np.int64)
        sims = user @ self.item_vectors.T
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n] if n < sims.shape[1] else np.argsort(-sims, axis=1)
        return top.astype(np.int64)

    def rank(self, h: Histories, tower_top: np.ndarray | None = None) -> Ranked:
        """Score each query's candidates. ``tower_top`` replaces the exact top-N (e.g. from an ANN index)."""
        user = self.tower.vectors(tower_input(h, self.tower.history_len, self.stats.n_items))
        if tower_top is None:
            tower_top = self.tower_top(user, self.sizes.tower)
        summary = summarize(h, self.stats)
        ptr, item = candidates(h, summary, self.stats, tower_top, n_past=self.sizes.past,
                               n_covis=self.sizes.covis, n_popular=self.sizes.popular,
                               n_fresh=self.sizes.fresh)
        q = np.repeat(np.arange(h.n_queries), np.diff(ptr))
        tower_score = np.einsum("ij,ij->i", user[q], self.item_vectors[item])
        x = ranker_rows(h, summary, self.stats, ptr, item, tower_score)
        score, scored_by = self.score_rows(x, tower_score)
        return Ranked(ptr, item, score, scored_by)

    def score_rows(self, x: np.ndarray, tower_score: np.ndarray) -> tuple[np.ndarray, str]:
        """Recovery rule: ranker fails -> the previous ranker version -> retrieval (two-tower) order."""
        if not x.shape[0]:
            return np.zeros(0, np.float32), "ranker"
        for model, label in ((self.ranker, "ranker"), (self.previous, "previous_ranker")):
            if model is None:
                continue
            try:
                score = np.asarray(model.score(x), dtype=np.float32).reshape(-1)
                if score.shape[0] != x.shape[0] or not np.all(np.isfinite(score)):
                    raise ValueError(f"{score.shape[0]} scores for {x.shape[0]} rows or non-finite scores")
                return score, label
            except Exception as exc:
                self.failures += 1
                logger.warning("%s failed, falling back: %s", label, exc)
        return tower_score.astype(np.float32), "retrieval_order"
