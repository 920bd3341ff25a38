"""The synthetic world: deterministic from its seed, complete, and carrying the signals the scorer needs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from strata.model_export import vocabulary as vocab
from strata.model_export.simulate import AGE_PENALTY, CHANNEL_EFFECT, W_INTENT, W_PRICE, true_logit
from strata.model_export.world import EPOCH_START_MS, LATENT_DIM, WorldConfig, generate_world, make_catalog
from strata.shared.contracts.api import CHANNELS, DEVICES, EVENT_TYPES, parse_event
from strata.shared.ranking.features import N_CATEGORIES

SMALL = {"n_items": 600, "n_users": 150, "n_sessions": 1_500}


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(seed=11, **SMALL))


def test_same_seed_same_fingerprint_and_arrays(world) -> None:
    again = generate_world(WorldConfig(seed=11, **SMALL))
    assert again.fingerprint() == world.fingerprint()
    np.testing.assert_array_equal(again.sessions.imp_item, world.sessions.imp_item)
    assert again.event_ids() == world.event_ids()


def test_different_seed_different_world(world) -> None:
    other = generate_world(WorldConfig(seed=12, **SMALL))
    assert other.fingerprint() != world.fingerprint()
    assert len(other.fingerprint()) == 64


def test_overrides_change_the_fingerprint(world) -> None:
    assert generate_world(WorldConfig(seed=11, **SMALL), n_sessions=1_400).fingerprint() != world.fingerprint()


def test_default_catalog_is_at_least_10k_items_with_every_category() -> None:
    cfg = WorldConfig()
    assert cfg.n_items >= 10_000
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    centroids = rng.normal(size=(N_CATEGORIES, LATENT_DIM))
    cat = make_catalog(rng, cfg.n_items, centroids / np.linalg.norm(centroids, axis=1, keepdims=True))
    assert len(cat) == cfg.n_items
    assert np.unique(cat.category).size == N_CATEGORIES
    assert len(set(cat.brand_names)) == 300


def test_catalog_fields(world) -> None:
    cat = world.catalog
    n = SMALL["n_items"]
    assert cat.item_id[0] == "SKU-000000" and cat.item_id[-1] == f"SKU-{n - 1:06d}"
    assert len(set(cat.item_id.tolist())) == n
    assert cat.category.min() == 0 and cat.category.max() == N_CATEGORIES - 1
    assert np.all(cat.price > 0) and np.array_equal(cat.price, np.round(cat.price, 2))
    restricted = {i for i, c in enumerate(vocab.CATEGORIES) if c.age_restricted}
    assert {vocab.CATEGORIES[i].name for i in restricted} == {"wine", "spirits", "beer", "tobacco"}
    np.testing.assert_array_equal(cat.age_restricted, np.isin(cat.category, list(restricted)))
    for i in range(0, n, 97):
        title = str(cat.title[i])
        assert title.startswith(cat.brand_names[cat.brand[i]] + " ")
        assert any(title.endswith(noun) for noun in vocab.CATEGORIES[cat.category[i]].nouns)
    np.testing.assert_allclose(np.linalg.norm(cat.latent, axis=1), 1.0, rtol=1e-5)


def test_sessions_channels_devices_and_time(world) -> None:
    s = world.sessions
    assert set(np.unique(s.channel).tolist()) == set(range(len(CHANNELS)))
    assert s.device.min() >= 0 and s.device.max() < len(DEVICES)
    assert np.all(s.device[s.channel == CHANNELS.index("app")] != DEVICES.index("desktop"))
    assert np.all(np.diff(s.start_ms) >= 0)  # session index is time order
    assert s.start_ms.min() >= EPOCH_START_MS
    assert s.start_ms.max() < EPOCH_START_MS + world.config.days * 86_400_000
    np.testing.assert_array_equal((s.start_ms - EPOCH_START_MS) // 3_600_000 % 24, s.hour)


def test_impressions_are_whole_slates_in_session_step_order(world) -> None:
    s, size = world.sessions, world.config.slate_size
    assert s.imp_item.size % size == 0
    np.testing.assert_array_equal(s.imp_pos, np.tile(np.arange(size), s.imp_item.size // size))
    key = s.imp_session * 100 + s.imp_step
    assert np.all(np.diff(key) >= 0)
    assert s.slate_uuid.shape == (s.imp_item.size // size, 16)
    assert 0.03 < s.imp_clicked.mean() < 0.25


def test_events_follow_clicks_and_are_contract_valid(world) -> None:
    s = world.sessions
    counts = np.bincount(s.ev_type, minlength=len(EVENT_TYPES))
    click, view, cart, buy = (counts[EVENT_TYPES.index(t)] for t in ("click", "view", "add_to_cart", "purchase"))
    assert click == view == int(s.imp_clicked.sum())
    assert 0 < buy <= cart < click
    assert np.all(np.diff(s.ev_session) >= 0)
    same = np.diff(s.ev_session) == 0
    assert np.all(np.diff(s.ev_ts_ms)[same] >= 0)
    ids = world.event_ids()
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)
    events = list(world.iter_events())
    assert len(events) == len(ids)
    first = events[0]
    assert parse_event(first.to_dict()) == first
    assert first.session_id == str(s.session_id[s.ev_session[0]])


def test_observed_clicks_follow_popularity_and_the_sessions_category() -> None:
    w = generate_world(WorldConfig(seed=3, n_items=2_000, n_users=400, n_sessions=6_000))
    s, cat = w.sessions, w.catalog
    appeal = cat.appeal[s.imp_item]
    high, low = appeal > np.quantile(appeal, 0.8), appeal < np.quantile(appeal, 0.2)
    assert s.imp_clicked[high].mean() > 1.5 * s.imp_clicked[low].mean()
    # Intent: an item in the category of something clicked at an earlier step is clicked more often.
    prev_click_cat = np.full(s.imp_item.size, -1)
    clicked = np.flatnonzero(s.imp_clicked)
    for row in range(s.imp_item.size):
        if row and s.imp_session[row] == s.imp_session[row - 1]:
            prev_click_cat[row] = prev_click_cat[row - 1]
        if s.imp_pos[row] == 0 and row:  # new slate: fold in the clicks of the previous slate
            prev = clicked[(clicked >= row - w.config.slate_size) & (clicked < row)]
            if prev.size and s.imp_session[prev[-1]] == s.imp_session[row]:
                prev_click_cat[row] = cat.category[s.imp_item[prev[0]]]
    item_cat = cat.category[s.imp_item]
    matches = (prev_click_cat >= 0) & (item_cat == prev_click_cat)
    others = (prev_click_cat >= 0) & (item_cat != prev_click_cat)
    assert s.imp_clicked[matches].mean() > 1.3 * s.imp_clicked[others].mean()


def test_true_logit_responds_to_intent_price_channel_and_age(world) -> None:
    cat = world.catalog
    item = int(np.flatnonzero(cat.age_restricted)[0])
    items = np.array([[item]])
    taste = np.zeros((1, cat.latent.shape[1]), dtype=np.float32)
    web, email = np.array([CHANNELS.index("web")]), np.array([CHANNELS.index("email")])
    dev, hour = np.array([0]), np.array([12])
    base = true_logit(cat, taste, np.zeros_like(taste), items, web, dev, hour)[0, 0]
    focused = true_logit(cat, taste, 3.0 * cat.latent[[item]], items, web, dev, hour)[0, 0]
    assert focused - base == pytest.approx(W_INTENT, abs=1e-5)  # intent is a cosine: scale-free
    on_email = true_logit(cat, taste, np.zeros_like(taste), items, email, dev, hour)[0, 0]
    assert on_email - base == pytest.approx(CHANNEL_EFFECT[2] + AGE_PENALTY[2], abs=1e-9)
    pricier = cat.price.copy()
    pricier[item] *= 2.0
    cat2 = type(cat)(**{f: getattr(cat, f) for f in cat.__slots__ if f != "price"}, price=pricier)
    doubled = true_logit(cat2, taste, np.zeros_like(taste), items, web, dev, hour)[0, 0]
    assert doubled - base == pytest.approx(W_PRICE * np.log(2.0), abs=1e-9)
