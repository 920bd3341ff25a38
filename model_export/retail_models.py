"""Train Strata's retrieval + ranking models on purchase baskets and write them as ONNX with parity.

The ranker needs labelled queries that the test never supplies: the last ``label_days`` of the training
baskets are the label window. Its invoices are answered exactly as test invoices will be (history =
everything of the customer before the invoice), with features from statistics and a two-tower trained
on the data BEFORE the window, so the ranker learns on the feature distribution serving will show it
(no feature has seen its own label). The served two-tower and statistics are then fitted on all the
training baskets.

More labelled queries than one window holds: ``label_windows`` > 1 adds the windows before it, each of the
same length, answered the same way from a two-tower and statistics trained on the data before THAT window
(so none of their features has seen its labels either), while the data before a window still spans at least
``MIN_EARLIER_SHARE`` of the log. The ranker is a seeded ensemble (``RankerParams.ensemble``) exported as
one ONNX graph that averages its members.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.split import temporal_split
from strata.model_export.item_stats import histories, item_stats
from strata.model_export.parity import check_parity, check_parity_feeds
from strata.model_export.ranker import (
    FEATURES_INPUT,
    SCORE_OUTPUT,
    RankerParams,
    TrainedRanker,
    export_ranker,
    train_ranker,
)
from strata.model_export.two_tower import (
    HISTORY_INPUT,
    ITEM_OUTPUT,
    USER_OUTPUT,
    TowerParams,
    TrainedTowers,
    export_item_tower,
    export_user_tower,
    train_two_tower,
)
from strata.shared.models.ranker_bundle import ITEM_TOWER_FILE, RANKER_FILE, USER_TOWER_FILE
from strata.shared.models.ranker_features import (
    DAY_MS,
    N_FEATURES,
    ItemStats,
    candidates,
    ranker_rows,
    summarize,
    tower_input,
)
from strata.shared.models.retrieval_ranker import CandidateSizes

logger = logging.getLogger(__name__)

CHUNK = 1024
RANKER_PARITY_QUERIES = 300
MAX_LABEL_SHARE = 0.25
MIN_EARLIER_SHARE = 0.4  # an earlier label window only while the data before it spans this share of the log


@dataclass(frozen=True, slots=True)
class StrataParams:
    tower: TowerParams = TowerParams()
    ranker: RankerParams = RankerParams(ensemble=3)
    sizes: CandidateSizes = CandidateSizes()
    label_days: float = 60.0
    label_windows: int = 2  # the latest label window and up to label_windows - 1 before it
    refit_tower: bool = False  # retrain the two-tower on all training data for serving
    parity_min_rows: int = 10_000
    seed: int = 7


@dataclass(slots=True)
class TrainedModels:
    towers: TrainedTowers
    ranker: TrainedRanker
    stats: ItemStats
    info: dict = field(default_factory=dict)


def ranker_examples(window_train: Baskets, label_start_ms: int, stats: ItemStats, towers: TrainedTowers,
                    sizes: CandidateSizes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, label, ptr) for the invoices at or after ``label_start_ms``, built by the shared feature code."""
    queries = temporal_split(window_train, label_start_ms).queries
    n_items = stats.n_items
    xs, ys, sizes_out = [], [], []
    for lo in range(0, len(queries), CHUNK):
        part = queries.take(slice(lo, lo + CHUNK))
        h = histories(part)
        user = towers.user_vectors(tower_input(h, towers.params.history_len, n_items))
        n = min(sizes.tower, n_items)
        sims = user @ towers.item_vectors.T
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n] if n < n_items else np.argsort(-sims, axis=1)
        summary = summarize(h, stats)
        ptr, item = candidates(h, summary, stats, top.astype(np.int64), n_past=sizes.past, n_covis=sizes.covis,
                               n_popular=sizes.popular)
        q = np.repeat(np.arange(len(part)), np.diff(ptr))
        score = np.einsum("ij,ij->i", user[q], towers.item_vectors[item])
        xs.append(ranker_rows(h, summary, stats, ptr, item, score))
        rel = part.relevant.tocsr()
        rel_keys = np.repeat(np.arange(len(part)), np.diff(rel.indptr)) * n_items + rel.indices
        ys.append(np.isin(q * n_items + item, rel_keys).astype(np.float32))
        sizes_out.append(np.diff(ptr))
    if not xs:
        return np.zeros((0, N_FEATURES), np.float32), np.zeros(0, np.float32), np.zeros(1, np.int64)
    ptr = np.r_[0, np.cumsum(np.concatenate(sizes_out))].astype(np.int64)
    return np.concatenate(xs), np.concatenate(ys), ptr


def concat_examples(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """One (x, label, ptr) from several ``ranker_examples`` results (their queries one after another)."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [p[2][-1] for p in parts[:-1]])
    ptr = np.concatenate([parts[0][2][:1]] + [p[2][1:] + o for p, o in zip(parts, offsets, strict=True)])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), ptr.astype(np.int64)


def train_models(train: Baskets, params: StrataParams = StrataParams(), text: np.ndarray | None = None,
                 text_registry: Path | str | None = None) -> TrainedModels:
    """Ranker on the label window (features from the data before it), then the served two-tower and stats.

    ``text``: float32 [n_items, dim] title vectors; None (with ``params.tower.text``) embeds the catalog's
    titles with the MiniLM encoder of ``text_registry`` or the cache (``model_export.item_text``)."""
    t0 = time.perf_counter()
    text_info: dict = {}
    if params.tower.text and text is None:
        from strata.model_export.item_text import catalog_title_vectors

        text, text_info = catalog_title_vectors(train.catalog.title, text_registry)
    if not params.tower.text:
        text = None
    t_text = time.perf_counter()
    tower_params = replace(params.tower, seed=params.seed)
    start, end = int(train.ts_ms.min()), int(train.ts_ms.max())
    label_days = min(params.label_days, (end - start) / DAY_MS * MAX_LABEL_SHARE)  # short logs keep most for features
    label_start = int(end - label_days * DAY_MS)
    before = train.before(label_start)
    if len(before) == 0 or len(train) == len(before):
        raise ValueError(f"need training baskets before and inside the {label_days:.1f}-day label window")
    towers_before = train_two_tower(before, tower_params, text)
    t_tower = time.perf_counter()
    x, y, ptr = ranker_examples(train, label_start, item_stats(before, text=text), towers_before, params.sizes)
    parts, window_end = [(x, y, ptr)], label_start
    for _ in range(1, params.label_windows):
        window_start = int(window_end - label_days * DAY_MS)
        if window_start - start < MIN_EARLIER_SHARE * (end - start):
            break
        earlier = train.before(window_start)
        towers_earlier = train_two_tower(earlier, tower_params, text)
        parts.append(ranker_examples(train.before(window_end), window_start, item_stats(earlier, text=text),
                                     towers_earlier, params.sizes))
        window_end = window_start
    x, y, ptr = concat_examples(parts)
    t_rows = time.perf_counter()
    ranker = train_ranker(x, y, ptr, replace(params.ranker, seed=params.seed))
    t_ranker = time.perf_counter()
    towers = train_two_tower(train, tower_params, text) if params.refit_tower else towers_before
    stats = item_stats(train, text=text)
    positives = float(y.sum()) / max(1, ptr.size - 1)
    info = {"label_days": round(label_days, 2), "label_windows": len(parts), "label_queries": int(ptr.size - 1),
            "ranker_rows": int(x.shape[0]),
            "positives_per_query": round(positives, 3), "tower_pairs": towers.pairs,
            "tower_loss": towers.final_loss, "ranker_loss": ranker.final_loss, "text": text_info or None,
            "seconds": {"text": round(t_text - t0, 1), "tower_before_window": round(t_tower - t_text, 1),
                        "ranker_rows": round(t_rows - t_tower, 1),  # earlier windows' towers included
                        "ranker": round(t_ranker - t_rows, 1),
                        "tower_all": round(time.perf_counter() - t_ranker, 1)}}
    logger.info("strata models trained: %s", info)
    return TrainedModels(towers, ranker, stats, info)


def write_onnx(models: TrainedModels, out_dir: Path, parity_rows: np.ndarray, parity_min_rows: int,
               history: np.ndarray) -> dict:
    """Write the user tower, the item tower and the ranker into ``out_dir``; raise ParityError unless ORT
    matches torch on ``history`` (user tower), every catalog item with and without its id (item tower) and
    ``parity_rows`` (ranker). Returns the parity reports."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tower_path = export_user_tower(models.towers, out_dir / USER_TOWER_FILE)
    item_path = export_item_tower(models.towers, out_dir / ITEM_TOWER_FILE)
    ranker_path = export_ranker(models.ranker, out_dir / RANKER_FILE)
    feeds = item_parity_feeds(models)
    return {
        "user_tower": check_parity(tower_path, models.towers.user_vectors, history,
                                   min_rows=min(parity_min_rows, history.shape[0]),
                                   input_name=HISTORY_INPUT, output_name=USER_OUTPUT),
        "item_tower": check_parity_feeds(item_path, models.towers.new_item_vectors, feeds, ITEM_OUTPUT,
                                         min_rows=min(parity_min_rows, feeds["item"].shape[0])),
        "ranker": check_parity(ranker_path, models.ranker.predict, parity_rows, min_rows=parity_min_rows,
                               input_name=FEATURES_INPUT, output_name=SCORE_OUTPUT),
    }


def item_parity_feeds(models: TrainedModels) -> dict[str, np.ndarray]:
    """Every catalog item twice: with its id (must give the shipped vector) and as a cold item (id unknown)."""
    s, towers = models.stats, models.towers
    n = s.n_items
    text = s.text if s.text is not None else np.zeros((n, towers.model.text_dim), np.float32)
    item = np.r_[np.arange(n), np.full(n, -1)]
    feeds = towers.item_tower_feeds(item, np.r_[s.category, s.category], np.r_[s.price, s.price],
                                    np.vstack([text, text]))
    bucket = towers.model.item_bucket[:n].numpy()  # the training buckets (float32 prices may cross an edge)
    feeds["price_bucket"] = np.r_[bucket, bucket].astype(np.int64)
    return feeds


def parity_inputs(train: Baskets, models: TrainedModels, sizes: CandidateSizes,
                  rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Real inputs for the parity gate: histories of training invoices and their ranker rows."""
    queries = temporal_split(train, int(train.ts_ms.min()) + 1).queries
    rng = np.random.default_rng(models.ranker.params.seed)
    # a log with fewer invoices than ``rows`` gives every one of them (the report says how many)
    pick = np.sort(rng.choice(len(queries), size=min(len(queries), max(rows, 1)), replace=False))
    part = queries.take(pick)
    h = histories(part)
    hist = tower_input(h, models.towers.params.history_len, models.stats.n_items)
    few = part.take(slice(0, RANKER_PARITY_QUERIES))  # ~300 candidates each: plenty of rows
    h = histories(few)
    user = models.towers.user_vectors(hist[:len(few)])
    summary = summarize(h, models.stats)
    ptr, item = candidates(h, summary, models.stats, None, n_past=sizes.past, n_covis=sizes.covis,
                           n_popular=sizes.popular)
    q = np.repeat(np.arange(len(few)), np.diff(ptr))
    score = np.einsum("ij,ij->i", user[q], models.towers.item_vectors[item])
    return hist, ranker_rows(h, summary, models.stats, ptr, item, score)
