"""Training and held-out rows for the edge scorer, built ONLY through ``shared.ranking.features``.

Item tables (popularity, embeddings, item features) are always computed from a trailing window of
sessions that ENDS where the scored rows begin, never from the rows themselves: counting a row's own click
in its item's popularity (or embedding only items that were clicked) leaks the label and teaches the
model a shortcut that fails at serving time. Sessions are numbered in start-time order and windows are
equal-length slices of that order:

    tables [0, a)  -> train rows [a, b)
    tables [a, b)  -> held-out rows [b, n)
    tables [n-w, n) -> the tables shipped in the bundle (what the edge serves on future traffic)

A row's session vector is the one the stream processor would have served when its slate was shown: every
event of the session before the slate's time (clicks, views, carts, purchases), replayed in log order through
``shared.ranking.session_update`` (event-time decay, per-type weights: the processor's ``streaming.session``
rule) over the window's item embeddings. Training and serving share that one definition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from strata.model_export.embeddings import click_popularity, interaction_matrix, learn_item_vectors
from strata.model_export.world import World
from strata.shared.contracts.api import CHANNELS, DEVICES, EVENT_TYPES
from strata.shared.ranking.features import assemble, context_block, item_block
from strata.shared.ranking.session_update import SessionAcc, SessionRule, apply_event, session_vec

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


def slate_session_vectors(world: World, item_vectors: np.ndarray, slates: np.ndarray,
                          rule: SessionRule) -> tuple[np.ndarray, np.ndarray]:
    """For slate indices ``slates`` (ascending): (float32 [n, EMBED_DIM] session vectors, bool [n] has one).

    A slate's vector is ``session_vec`` of the session's state after ``apply_event`` of each of its events
    earlier than the slate (log order, weight from ``rule``; weight-0 types do not move it), exactly what
    the processor writes for those events and the edge reads."""
    s = world.sessions
    first_imp = np.searchsorted(s.imp_slate, slates)
    slate_sess, slate_ts = s.imp_session[first_imp], s.imp_ts_ms[first_imp]
    weight = np.array([rule.weight(t) for t in EVENT_TYPES])
    ev_start = np.searchsorted(s.ev_session, slate_sess, side="left")
    ev_end = np.searchsorted(s.ev_session, slate_sess, side="right")
    ev_item, ev_type, ev_ts = s.ev_item.tolist(), s.ev_type.tolist(), s.ev_ts_ms.tolist()
    out = np.zeros((slates.size, item_vectors.shape[1]), dtype=np.float32)
    has = np.zeros(slates.size, dtype=bool)
    session, nxt = -1, 0
    state: SessionAcc | None = None
    vec: np.ndarray | None = None
    for k, (sess, ts, lo, hi) in enumerate(zip(slate_sess.tolist(), slate_ts.tolist(), ev_start.tolist(),
                                               ev_end.tolist(), strict=True)):
        if sess != session:                      # slates come in (session, time) order
            session, state, nxt, vec = sess, None, lo, None
        moved = False
        while nxt < hi and ev_ts[nxt] < ts:
            w = float(weight[ev_type[nxt]])
            if w != 0.0:
                state = apply_event(state, item_vectors[ev_item[nxt]], w, ev_ts[nxt], rule)
                moved = True
            nxt += 1
        if moved:
            vec = session_vec(state)
        if vec is not None:
            out[k], has[k] = vec, True
    return out, has


def session_sims(world: World, item_vectors: np.ndarray, rows: np.ndarray,
                 rule: SessionRule | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For impression indices ``rows``: (has_session 0/1, cosine of the item to the session vector served
    when the row's slate was shown: ``slate_session_vectors``)."""
    s = world.sessions
    slates, slot = np.unique(s.imp_slate[rows], return_inverse=True)
    vecs, ok = slate_session_vectors(world, item_vectors, slates, rule or SessionRule())
    has = ok[slot].astype(np.float32)
    sims = np.einsum("nd,nd->n", item_vectors[s.imp_item[rows]], vecs[slot])   # 0 where there is no vector
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
