"""The two-tower's text path: the item tower ONNX (parity, same vectors as the bundle's), items the model
never saw placed by their title's MiniLM vector, and the retrieval bundle that ships the item tower."""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.datasets.interface import SyntheticPurchases
from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.item_text import catalog_title_vectors
from strata.model_export.parity import TOLERANCE
from strata.model_export.ranker import RankerParams
from strata.model_export.retail_bundles import export_retail_bundles
from strata.model_export.retail_models import (
    StrataParams,
    item_parity_feeds,
    parity_inputs,
    train_models,
    write_onnx,
)
from strata.model_export.two_tower import TowerParams, train_two_tower
from strata.model_export.world import WorldConfig
from strata.shared.errors import BundleError
from strata.shared.models import bundle as B
from strata.shared.models import ranker_bundle as RB
from strata.shared.models.retrieval_ranker import ItemTowerModel

SMALL_WORLD = WorldConfig(n_items=500, n_users=200, n_sessions=3000)
SMALL = StrataParams(tower=TowerParams(dim=16, history_len=10, epochs=2, batch=256),
                     ranker=RankerParams(hidden=(16,), epochs=3), parity_min_rows=200)
COLD = 40  # items whose every purchase is removed from training


@pytest.fixture(scope="module")
def dataset() -> SyntheticPurchases:
    return SyntheticPurchases(SMALL_WORLD)


@pytest.fixture(scope="module")
def baskets(dataset) -> Baskets:
    return dataset.baskets()


@pytest.fixture(scope="module")
def text(baskets) -> np.ndarray:
    vectors, info = catalog_title_vectors(baskets.catalog.title)
    assert vectors.shape == (baskets.catalog.n_items, 384) and info["items"] == baskets.catalog.n_items
    return vectors


@pytest.fixture(scope="module")
def trained(baskets, text):
    return train_models(baskets, SMALL, text=text)


def test_item_tower_onnx_matches_torch_and_the_shipped_vectors(trained, baskets, tmp_path) -> None:
    hist, rows = parity_inputs(baskets, trained, SMALL.sizes, SMALL.parity_min_rows)
    parity = write_onnx(trained, tmp_path, rows, SMALL.parity_min_rows, hist)
    n = baskets.catalog.n_items
    assert parity["item_tower"]["max_abs_diff"] <= TOLERANCE and parity["item_tower"]["rows"] == 2 * n
    tower = ItemTowerModel(tmp_path / RB.ITEM_TOWER_FILE, trained.towers.price_edges)
    feeds = item_parity_feeds(trained)
    got = tower.vectors(feeds["category"][:n], np.ones(n), trained.stats.text, np.arange(n))
    # with its id an item gets the bundle's vector (price 1.0 here: the bucket comes from the price, so use
    # the bundle's buckets through the raw session for the exact comparison)
    exact = tower._sess.run(["item_vector"], {k: v[:n] for k, v in feeds.items()})[0]
    assert np.abs(exact - trained.towers.item_vectors).max() <= TOLERANCE
    assert got.shape == (n, SMALL.tower.dim) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


# A shop where what people buy follows the product's words: 8 themes, 25 items each, ONE category and one
# price for all, so only the title can tell a never-bought item's theme.
THEMES = (("mug", "teacup", "teapot", "saucer", "coffee cup"),
          ("candle", "tealight", "lantern", "candle holder", "scented wax"),
          ("notebook", "pencil", "eraser", "ballpoint pen", "sketchbook"),
          ("wool scarf", "glove", "bobble hat", "mitten", "beanie"),
          ("dog collar", "cat toy", "pet bowl", "dog lead", "pet bed"),
          ("garden hose", "plant pot", "trowel", "seed tray", "watering can"),
          ("christmas bauble", "tree star", "advent calendar", "christmas wreath", "snowman ornament"),
          ("lunch box", "water bottle", "picnic blanket", "thermos flask", "food container"))
ADJECTIVES = ("red", "blue", "vintage", "large", "small")


def themed_shop(seed: int = 3) -> tuple[Baskets, np.ndarray]:
    """(baskets, theme per item): each customer buys from one theme (9 items in 10)."""
    from strata.model_export.evaluation.baskets import Catalog, make_baskets

    titles = [f"{a} {n}" for nouns in THEMES for n in nouns for a in ADJECTIVES]
    theme = np.repeat(np.arange(len(THEMES)), len(ADJECTIVES) * 5)
    n = len(titles)
    catalog = Catalog(np.array([f"T{i:03d}" for i in range(n)]), np.array(titles), np.full(n, 2.5),
                      np.zeros(n, np.int64))
    rng = np.random.default_rng(seed)
    customer, item, invoice, ts = [], [], [], []
    for c in range(300):
        own = np.flatnonzero(theme == c % len(THEMES))
        for k in range(8):
            inv = c * 8 + k
            for _ in range(4):
                pick = rng.choice(own) if rng.random() < 0.9 else rng.integers(n)
                customer.append(c), item.append(int(pick)), invoice.append(inv)
                ts.append(1_000_000 * (k * 300 + c))
    b = make_baskets(np.array(customer), np.array(item), np.array(invoice), np.array(ts),
                     np.zeros(len(item), np.int64), catalog, 300)
    return b, theme


@pytest.fixture(scope="module")
def shop():
    b, theme = themed_shop()
    vectors, _ = catalog_title_vectors(b.catalog.title)
    cold = np.flatnonzero(np.arange(theme.size) % 25 < 3)           # 3 items per theme never bought
    return b.where(~np.isin(b.item, cold)), theme, vectors, cold


def _own_theme_margin(vectors: np.ndarray, theme: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """Per cold item: mean cosine to the bought items of its theme minus to the bought items of the others."""
    bought = np.setdiff1d(np.arange(theme.size), cold)
    out = []
    for i in cold.tolist():
        sims = vectors[bought] @ vectors[i]
        out.append(sims[theme[bought] == theme[i]].mean() - sims[theme[bought] != theme[i]].mean())
    return np.array(out)


def test_a_cold_item_lands_near_its_text_neighbours(shop) -> None:
    """Items with no training purchase (same category and price as every other) get their vector from their
    title: it lands among the items of their theme, which the model learned from purchases."""
    train, theme, text, cold = shop
    params = TowerParams(dim=16, history_len=8, epochs=6, batch=256)
    towers = train_two_tower(train, params, text)
    margin = _own_theme_margin(towers.item_vectors, theme, cold)
    assert np.mean(margin > 0) >= 0.8 and margin.mean() > 0.1, margin.round(3)
    # without the text path every cold item gets the same vector (category and price are shared): no theme
    from dataclasses import replace

    blind = train_two_tower(train, replace(params, text=False, id_dropout=0.0), None).item_vectors[cold]
    assert np.abs(blind - blind[0]).max() < 1e-6
    assert np.abs(towers.item_vectors[cold] - towers.item_vectors[cold[0]]).max() > 0.1


def test_retrieval_bundle_ships_the_item_tower_and_the_ranker_the_text(dataset, tmp_path) -> None:
    export_retail_bundles(tmp_path, dataset, SMALL)
    r_dir = RB.bundle_dir(tmp_path, RB.RETRIEVAL_MODEL)
    manifest = B.verify_bundle(r_dir, required=(*RB.RETRIEVAL_FILES, RB.ITEM_TOWER_FILE))
    assert manifest["item_tower"]["parity"]["max_abs_diff"] <= TOLERANCE
    assert manifest["text"]["items"] == SMALL_WORLD.n_items and manifest["text"]["text"] == "title"
    pipeline, ids, _ = RB.load_retrieval_ranker(tmp_path)
    assert pipeline.item_tower is not None and pipeline.stats.text.shape == (ids.size, 384)
    # each item re-added as new (no id: the category, price and title of items.parquet) lands near itself
    import pyarrow.parquet as pq

    items = pq.read_table(r_dir / B.ITEMS_FILE).to_pydict()
    new = pipeline.item_tower.vectors(np.array(items["category_idx"]), np.array(items["price"]), pipeline.stats.text)
    sims = new @ pipeline.item_vectors.T
    own = sims[np.arange(ids.size), np.arange(ids.size)]
    rank = (sims > own[:, None]).sum(axis=1)
    assert np.median(own) > 0.8 and np.mean(rank < 10) > 0.5, (np.median(own), np.mean(rank < 10))


def test_an_older_retrieval_bundle_without_item_tower_still_loads(dataset, tmp_path) -> None:
    import json

    export_retail_bundles(tmp_path, dataset, SMALL)
    r_dir = RB.bundle_dir(tmp_path, RB.RETRIEVAL_MODEL)
    (r_dir / RB.ITEM_TOWER_FILE).unlink()
    manifest = json.loads((r_dir / B.MANIFEST_FILE).read_text())
    del manifest["files"][RB.ITEM_TOWER_FILE]
    (r_dir / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    pipeline, _, _ = RB.load_retrieval_ranker(tmp_path)
    assert pipeline.item_tower is None
    # an older ranker (feature spec ranker-1, 17 features) is refused with the spec in the message
    k_dir = RB.bundle_dir(tmp_path, RB.RANKER_MODEL)
    manifest = json.loads((k_dir / B.MANIFEST_FILE).read_text())
    manifest["feature_spec_version"] = "ranker-1"
    (k_dir / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="ranker-1"):
        RB.load_retrieval_ranker(tmp_path)


def test_training_with_text_is_deterministic_under_a_seed(baskets, text) -> None:
    """Same seed, same vectors, bit for bit (the text projection's backward must not scatter in a racy order)."""
    a = train_two_tower(baskets, SMALL.tower, text).item_vectors
    b = train_two_tower(baskets, SMALL.tower, text).item_vectors
    assert np.array_equal(a, b)
