"""Training rows: built through shared.ranking.features, session vectors by the processor's rule from the
events before each slate only, no label leak."""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.dataset import (
    build_dataset,
    context_table,
    item_tables,
    score_rows,
    session_sims,
    slate_session_vectors,
)
from strata.model_export.evaluate import POPULARITY_COLUMN, click_metrics
from strata.model_export.world import WorldConfig, generate_world
from strata.shared.contracts.api import CHANNELS, DEVICES, EVENT_TYPES
from strata.shared.ranking.features import ITEM_DIM, SESSION_DIM, context_block
from strata.shared.ranking.session_update import SessionRule, replay_session, session_vec


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(seed=21, n_items=800, n_users=200, n_sessions=2_000))


def test_training_session_vectors_are_the_processors_replay_of_the_events_before_the_slate(world) -> None:
    """The feature the edge scorer trains on, replayed both ways: the dataset's pass over the world's arrays,
    and the world's events in contract form (what ingest puts on the log) through ``replay_session``, the
    processor's rule (``tests/unit/test_stream_effects.py`` checks the processor's writes against it)."""
    s = world.sessions
    tables = item_tables(world, 0, 1_000)
    rule = SessionRule()
    rows = np.flatnonzero(s.imp_session < 300)
    has, sims = session_sims(world, tables.item_vectors, rows, rule)
    assert 0 < has.mean() < 1
    slates = np.unique(s.imp_slate[rows])
    vecs, ok = slate_session_vectors(world, tables.item_vectors, slates, rule)
    row_of_item = {item_id: i for i, item_id in enumerate(world.catalog.item_id.tolist())}
    events: dict[str, list] = {}
    for ev in world.iter_events():
        events.setdefault(ev.session_id, []).append(ev)
    compared = 0
    for k, slate in enumerate(slates.tolist()):
        first = int(np.searchsorted(s.imp_slate, slate))
        sid, ts = str(s.session_id[s.imp_session[first]]), int(s.imp_ts_ms[first])
        before = [ev for ev in events.get(sid, []) if ev.ts_ms < ts]
        expected = session_vec(replay_session(before, lambda i: tables.item_vectors[row_of_item[i]], rule))
        if expected is None:
            assert not ok[k]
        else:
            assert ok[k]
            np.testing.assert_array_equal(vecs[k], expected)          # bit for bit
            compared += 1
    assert compared > 100
    # the scorer's input columns: has_session and the item's cosine to that vector, for every row
    k = np.searchsorted(slates, s.imp_slate[rows])
    np.testing.assert_array_equal(has, ok[k].astype(np.float32))
    np.testing.assert_allclose(sims, np.einsum("nd,nd->n", tables.item_vectors[s.imp_item[rows]], vecs[k]),
                               atol=1e-6)


def test_views_carts_and_purchases_move_the_training_vector_by_their_weights(world) -> None:
    s = world.sessions
    tables = item_tables(world, 0, 1_000)
    slates = np.unique(s.imp_slate[s.imp_session < 300])
    clicks_only = SessionRule(weights={"click": 2.0})
    a, _ = slate_session_vectors(world, tables.item_vectors, slates, SessionRule())
    b, _ = slate_session_vectors(world, tables.item_vectors, slates, clicks_only)
    assert not np.array_equal(a, b)


def test_rows_are_assembled_by_the_shared_builder(world) -> None:
    s = world.sessions
    tables = item_tables(world, 0, 800)
    rows = score_rows(world, tables, 800, 1_200)
    mask = (s.imp_session >= 800) & (s.imp_session < 1_200)
    np.testing.assert_array_equal(rows.item, s.imp_item[mask])
    np.testing.assert_array_equal(rows.x[:, :ITEM_DIM], tables.item_features[rows.item])
    first = int(np.flatnonzero(mask)[0])
    sess = s.imp_session[first]
    ctx = context_block(CHANNELS[s.channel[sess]], DEVICES[s.device[sess]], int(s.hour[sess]))
    np.testing.assert_array_equal(rows.x[0, ITEM_DIM:-SESSION_DIM], ctx)
    assert rows.x[0, -SESSION_DIM:].tolist() == [0.0, 0.0]  # step 0: no earlier events
    assert context_table().shape == (len(CHANNELS), len(DEVICES), 24, ctx.size)


def test_tables_come_from_the_window_before_the_rows(world) -> None:
    ds = build_dataset(world)
    a, b = ds.windows["train_rows"]
    assert ds.windows["train_tables"] == [0, a] and ds.windows["test_tables"] == [a, b]
    s = world.sessions
    click = EVENT_TYPES.index("click")
    in_window = (s.ev_session < a) & (s.ev_type == click)
    expected = np.bincount(s.ev_item[in_window], minlength=len(world.catalog))
    np.testing.assert_allclose(ds.train.x[:, POPULARITY_COLUMN], np.log1p(expected[ds.train.item]) / 10.0,
                               rtol=1e-6)
    n = world.config.n_sessions
    assert ds.windows["serving_tables"] == [n - a, n]
    assert len(ds.train) + len(ds.test) < s.imp_item.size  # the first window only feeds tables


def test_click_metrics_exact() -> None:
    m = click_metrics(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]))
    assert m == {"auc": 1.0, "logloss": round(float(-(np.log(0.9) + np.log(0.8)) / 2), 6)}
    assert click_metrics(np.array([1, 0]), np.array([0.3, 0.6]))["auc"] == 0.0
