"""Training rows: built through shared.ranking.features, session vectors from earlier clicks only, no label leak."""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.dataset import build_dataset, context_table, item_tables, score_rows, session_sims
from strata.model_export.evaluate import POPULARITY_COLUMN, click_metrics
from strata.model_export.world import WorldConfig, generate_world
from strata.shared.contracts.api import CHANNELS, DEVICES, EVENT_TYPES
from strata.shared.ranking.features import ITEM_DIM, SESSION_DIM, context_block, session_vector


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(seed=21, n_items=800, n_users=200, n_sessions=2_000))


def test_session_sims_use_only_clicks_before_the_slate(world) -> None:
    s = world.sessions
    tables = item_tables(world, 0, 1_000)
    rows = np.flatnonzero(s.imp_session < 300)
    has, sims = session_sims(world, tables.item_vectors, rows)
    assert 0 < has.mean() < 1
    for k, row in enumerate(rows.tolist()):
        earlier = (s.imp_session == s.imp_session[row]) & (s.imp_step < s.imp_step[row]) & s.imp_clicked
        vec = session_vector(tables.item_vectors[s.imp_item[earlier]])  # (step, position) order
        if vec is None:
            assert has[k] == 0 and sims[k] == 0
        else:
            assert has[k] == 1
            assert sims[k] == pytest.approx(float(tables.item_vectors[s.imp_item[row]] @ vec), abs=1e-6)


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
    assert rows.x[0, -SESSION_DIM:].tolist() == [0.0, 0.0]  # step 0: no earlier clicks
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
