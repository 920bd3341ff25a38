"""Edge feature builder: layout, exact values for hand-made inputs, and the train/serve assembly paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from strata.shared.contracts.api import CHANNELS, DEVICES
from strata.shared.ranking import features as F

# float32 columns are computed in float64 and rounded once; compare to that rounding.
F32 = {"rtol": 1e-7, "atol": 0.0}


def test_dims_add_up() -> None:
    assert F.ITEM_DIM == F.N_CATEGORIES + 3 == 27
    assert F.CONTEXT_DIM == len(CHANNELS) + len(DEVICES) + 2 == 11
    assert F.SESSION_DIM == 2
    assert F.FEATURE_DIM == F.ITEM_DIM + F.CONTEXT_DIM + F.SESSION_DIM == 40


def _catalog() -> np.ndarray:
    return F.item_block(
        category=np.array([0, 5, 23]),
        price=np.array([0.0, math.e**3 - 1.0, 99.0]),
        popularity=np.array([0, 9, 0]),
        age_restricted=np.array([False, True, False]),
    )


def test_item_block_shape_dtype_and_one_hot() -> None:
    x = _catalog()
    assert x.shape == (3, F.ITEM_DIM) and x.dtype == np.float32
    onehot = x[:, : F.N_CATEGORIES]
    expected = np.zeros((3, F.N_CATEGORIES), dtype=np.float32)
    expected[0, 0] = expected[1, 5] = expected[2, 23] = 1.0
    np.testing.assert_array_equal(onehot, expected)


def test_item_block_price_popularity_age_columns() -> None:
    x = _catalog()
    price = x[:, F.N_CATEGORIES]
    assert price[0] == np.float32(-2.0)                     # (log1p(0) - 3) / 1.5
    assert abs(float(price[1])) < 1e-6                       # log1p(e^3 - 1) == 3 -> 0
    np.testing.assert_allclose(price[2], (math.log(100.0) - 3.0) / 1.5, **F32)
    pop = x[:, F.N_CATEGORIES + 1]
    assert pop[0] == 0.0 and pop[2] == 0.0
    np.testing.assert_allclose(pop[1], math.log(10.0) / 10.0, **F32)
    np.testing.assert_array_equal(x[:, F.N_CATEGORIES + 2], np.array([0.0, 1.0, 0.0], dtype=np.float32))


def test_item_block_empty_catalog() -> None:
    x = F.item_block(np.array([], dtype=np.int64), np.array([]), np.array([]), np.array([]))
    assert x.shape == (0, F.ITEM_DIM)


@pytest.mark.parametrize("bad", [-1, F.N_CATEGORIES, 99])
def test_item_block_out_of_range_category_raises(bad: int) -> None:
    with pytest.raises(ValueError, match=r"category index must be in \[0, 24\)"):
        F.item_block(np.array([0, bad]), np.array([1.0, 1.0]), np.array([0, 0]), np.array([0, 0]))


def test_context_block_exact_vector() -> None:
    v = F.context_block("app", "mobile", 6)
    assert v.dtype == np.float32 and v.shape == (F.CONTEXT_DIM,)
    expected = np.zeros(F.CONTEXT_DIM, dtype=np.float32)
    expected[CHANNELS.index("app")] = 1.0                      # index 1
    expected[len(CHANNELS) + DEVICES.index("mobile")] = 1.0    # index 6
    expected[-2] = 1.0                                         # sin(pi/2)
    expected[-1] = np.float32(math.cos(math.pi / 2))           # ~6e-17 -> float32
    np.testing.assert_array_equal(v, expected)
    assert v.tolist()[:9] == [0, 1, 0, 0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize(("hour", "sin", "cos"), [
    (0, 0.0, 1.0),
    (12, math.sin(math.pi), -1.0),
    (18, -1.0, math.cos(1.5 * math.pi)),
    (3, math.sqrt(0.5), math.sqrt(0.5)),
    (24, 0.0, 1.0),   # wraps like hour 0
])
def test_context_block_hour_on_unit_circle(hour: int, sin: float, cos: float) -> None:
    v = F.context_block("web", "desktop", hour)
    np.testing.assert_allclose(v[-2:], [sin, cos], rtol=1e-6, atol=1e-7)
    assert v[-2] ** 2 + v[-1] ** 2 == pytest.approx(1.0, abs=1e-6)


def test_context_block_unknown_device_maps_to_other() -> None:
    np.testing.assert_array_equal(F.context_block("email", "fridge", 9), F.context_block("email", "other", 9))
    v = F.context_block("email", "fridge", 9)
    assert v[len(CHANNELS) + DEVICES.index("other")] == 1.0
    assert v[len(CHANNELS): len(CHANNELS) + len(DEVICES)].sum() == 1.0


def test_context_block_one_hot_per_channel() -> None:
    for i, ch in enumerate(CHANNELS):
        v = F.context_block(ch, "tablet", 0)
        assert np.flatnonzero(v[: len(CHANNELS)]).tolist() == [i]


def _rows(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, F.ITEM_DIM)).astype(np.float32)


def test_assemble_layout_and_broadcast_equals_per_row_context() -> None:
    items = _rows()
    ctx = F.context_block("sms", "tablet", 21)
    sims = np.array([0.1, -0.2, 0.3, 0.0], dtype=np.float32)
    x = F.assemble(items, ctx, sims)
    assert x.shape == (4, F.FEATURE_DIM) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, : F.ITEM_DIM], items)
    np.testing.assert_array_equal(x[:, F.ITEM_DIM: F.ITEM_DIM + F.CONTEXT_DIM], np.tile(ctx, (4, 1)))
    np.testing.assert_array_equal(x[:, -2], np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(x[:, -1], sims)
    per_row = F.assemble(items, np.tile(ctx, (4, 1)), sims)
    np.testing.assert_array_equal(per_row, x)


def test_assemble_without_session_is_zero_block() -> None:
    x = F.assemble(_rows(), F.context_block("web", "desktop", 12), None)
    np.testing.assert_array_equal(x[:, -F.SESSION_DIM:], np.zeros((4, 2), dtype=np.float32))


def test_assemble_has_session_mask_per_row() -> None:
    sims = np.array([0.5, 0.0, 0.25, 0.0], dtype=np.float32)
    mask = np.array([1, 0, 1, 0], dtype=np.float32)
    x = F.assemble(_rows(), F.context_block("web", "desktop", 12), sims, has_session=mask)
    np.testing.assert_array_equal(x[:, -2], mask)
    np.testing.assert_array_equal(x[:, -1], sims)


def test_assemble_into_preallocated_buffer() -> None:
    buf = np.full((10, F.FEATURE_DIM), 7.0, dtype=np.float32)
    items = _rows()
    ctx = F.context_block("pos", "desktop", 1)
    x = F.assemble(items, ctx, None, out=buf)
    assert x.shape == (4, F.FEATURE_DIM)
    assert np.shares_memory(x, buf)
    np.testing.assert_array_equal(x, F.assemble(items, ctx, None))
    assert np.all(buf[4:] == 7.0)   # rows past n untouched


def test_assemble_with_a_session_equals_manual_computation() -> None:
    rng = np.random.default_rng(5)
    feats = F.item_block(rng.integers(0, F.N_CATEGORIES, 6), rng.uniform(1, 200, 6), rng.integers(0, 50, 6),
                         rng.integers(0, 2, 6))
    vecs = rng.normal(size=(6, F.EMBED_DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = np.array([4, 0, 2])
    ctx = F.context_block("web", "mobile", 20)
    sv = (vecs[1] + vecs[3]) / np.linalg.norm(vecs[1] + vecs[3])
    x = F.assemble(feats[idx], ctx, vecs[idx] @ sv)
    manual = np.zeros((3, F.FEATURE_DIM), dtype=np.float32)
    for r, i in enumerate(idx):
        manual[r, : F.ITEM_DIM] = feats[i]
        manual[r, F.ITEM_DIM: F.ITEM_DIM + F.CONTEXT_DIM] = ctx
        manual[r, -2] = 1.0
        manual[r, -1] = float(np.dot(vecs[i].astype(np.float64), sv.astype(np.float64)))
    np.testing.assert_allclose(x, manual, rtol=1e-6, atol=1e-7)
    x0 = F.assemble(feats[idx], ctx, None)
    np.testing.assert_array_equal(x0[:, -2:], np.zeros((3, 2), dtype=np.float32))
    np.testing.assert_array_equal(x0[:, :-2], x[:, :-2])
