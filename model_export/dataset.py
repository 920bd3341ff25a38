"""Training and held-out rows for the edge scorer, built ONLY through ``shared.ranking.features``.

Item tables (popularity, embeddings, item features) are always computed from a trailing window of
sessions that ENDS where the scored rows begin, never from the rows themselves: counting a row's own click
in its item's popularity (or embedding only items that were clicked) leaks the label and teaches the
model a shortcut that fails at serving time. Sessions are numbered in start-time order and windows are
equal-length slices of that order:

    tables [0, a)  -> train rows [a, b)
    tables [a, b)  -> held-out rows [b, n)
    tables [n-w, n) -> the tables shipped in the bundle (what the edge serves on future traffic)

Session vectors for a row come from ``shared.ranking.features.session_vector`` over the learned embeddings of the
items its session clicked before that slate (the stream processor calls the same function when serving).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from strata.model_export.embeddings import click_popularity, interaction_matrix, learn_item_vectors
from strata.model_export.world import World
from strata.shared.contracts.api import CHANNELS, DEVICES
from strata.shared.ranking.features import assemble, context_block, item_block, session_vector

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Rows:
    x: np.ndarray  # float32 [n, FEATURE_DIM]
    y: np.ndarray  # float32 [n] clicked 0/1
    item: np.ndarray  # int64 catalog index per row
    p_true: np.ndarray  # float32 true click probability (oracle reference only)

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(slots=True)
class ItemTables:
    """Everything about items that the scorer sees, learned from one window of sessions."""

    popularity: np.ndarray  # int64 clicks per item in the window
    channel_popularity: np.ndarray  # int64 [len(CHANNELS), n_items] clicks per channel in the window
    item_vectors: np.ndarray  # float32 [n_items, EMBED_DIM]
    item_features: np.ndarray  # float32 [n_items, ITEM_DIM] (shared.ranking.features.item_block)
    sessions: tuple[int, int]  # [lo, hi) session window


@dataclass(slots=True)
class Dataset:
    train: Rows
    test: Rows
    serving: ItemTables  # tables shipped in the bundle
    windows: dict[str, list[int]]


def context_table() -> np.ndarray:
    """context_block for every (channel, device, hour): [channels, devices, 24, CONTEXT_DIM]."""
    return np.stack([
        np.stack([np.stack([context_block(ch, dev, h) for h in range(24)]) for dev in DEVICES])
        for ch in CHANNELS
    ])


def session_sims(world: World, item_vectors: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For impression indices ``rows``: (has_session 0/1, cosine of the item to the session vector
    built from the session's clicks strictly before the row's slate)."""
    s = world.sessions
    steps = world.config.max_steps
    clicked = np.flatnonzero(s.imp_clicked)  # already ordered by (session, step, position)
    click_sess, click_item = s.imp_session[clicked], s.imp_item[clicked]
    click_key = click_sess * steps + s.imp_step[clicked]
    imp_sess = s.imp_session[rows]
    last = np.searchsorted(click_key, imp_sess * steps + s.imp_step[rows], side="left") - 1
    valid = last >= 0
    valid[valid] = click_sess[last[valid]] == imp_sess[valid]
    first_click = np.searchsorted(click_sess, click_sess, side="left")
    needed = np.unique(last[valid])
    vec_of = np.zeros((needed.size, item_vectors.shape[1]), dtype=np.float32)
    has_vec = np.zeros(needed.size, dtype=bool)
    for j, g in enumerate(needed.tolist()):
        v = session_vector(item_vectors[click_item[first_click[g]:g + 1]])
        if v is not None:
            vec_of[j], has_vec[j] = v, True
    slot = np.searchsorted(needed, last[valid])
    has = np.zeros(rows.size, dtype=np.float32)
    sims = np.zeros(rows.size, dtype=np.float32)
    hit = np.flatnonzero(valid)[has_vec[slot]]
    slot = slot[has_vec[slot]]
    has[hit] = 1.0
    sims[hit] = np.einsum("nd,nd->n", item_vectors[s.imp_item[rows[hit]]], vec_of[slot])
    return has, sims


def item_tables(world: World, lo: int, hi: int) -> ItemTables:
    s, cat = world.sessions, world.catalog
    n_items = len(cat)
    ev = (s.ev_session >= lo) & (s.ev_session < hi)
    items, types = s.ev_item[ev], s.ev_type[ev]
    matrix = interaction_matrix(s.user[s.ev_session[ev]], items, types, world.config.n_users, n_items)
    vectors = learn_item_vectors(matrix, seed=world.config.seed)
    popularity = click_popularity(items, types, n_items)
    channel = s.channel[s.ev_session[ev]]
    per_channel = np.stack([click_popularity(items[channel == c], types[channel == c], n_items)
                            for c in range(len(CHANNELS))])
    features = item_block(cat.category, cat.price, popularity, cat.age_restricted)
    return ItemTables(popularity, per_channel, vectors, features, (lo, hi))


def score_rows(world: World, tables: ItemTables, lo: int, hi: int) -> Rows:
    """Rows for every impression of sessions [lo, hi), featurised with ``tables``."""
    s = world.sessions
    rows = np.flatnonzero((s.imp_session >= lo) & (s.imp_session < hi))
    sess = s.imp_session[rows]
    ctx = context_table()[s.channel[sess], s.device[sess], s.hour[sess]]
    has, sims = session_sims(world, tables.item_vectors, rows)
    items = s.imp_item[rows]
    x = assemble(tables.item_features[items], ctx, sims, has_session=has)
    return Rows(x, s.imp_clicked[rows].astype(np.float32), items, s.imp_p_true[rows])


def build_dataset(world: World, window_share: float = 0.4, test_share: float = 0.2) -> Dataset:
    n = world.config.n_sessions
    b = int(round(n * (1.0 - test_share)))
    a = b - int(round(n * window_share))
    w = int(round(n * window_share))
    if a <= 0 or b >= n:
        raise ValueError(f"window_share {window_share} + test_share {test_share} leave no training rows")
    train = score_rows(world, item_tables(world, 0, a), a, b)
    test = score_rows(world, item_tables(world, a, b), b, n)
    serving = item_tables(world, n - w, n)
    windows = {"train_tables": [0, a], "train_rows": [a, b], "test_tables": [a, b], "test_rows": [b, n],
               "serving_tables": [n - w, n]}
    logger.info("rows train=%d test=%d; session windows %s", len(train), len(test), windows)
    return Dataset(train, test, serving, windows)
