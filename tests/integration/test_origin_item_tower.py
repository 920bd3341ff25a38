"""Catalog updates reach the two-tower (real exported bundles, real MiniLM text encoder in ONNX, real Qdrant
Edge, real Valkey): an item added by ``POST /v1/items`` is embedded by the item tower and comes from the
two-tower source for a user whose taste matches it; a known item whose facts change gets a new vector; an
item out of stock leaves the source."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.item_tower import tower_vectors
from strata.origin.node import OriginNode
from strata.origin.tower_search import SENTINELS
from strata.shared.config import load_settings
from strata.shared.keys import session_key
from strata.shared.ranking.session_update import push_recent

USER, SESSION = "u-item-tower", "s-item-tower"
SEEN = ["SKU-000021", "SKU-000007", "SKU-000042"]        # most recent first
RETRIEVE = 20                                             # of ~500 items: only a matching taste gets in


@pytest.fixture(scope="module")
def text_models_registry(models_registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models registry plus a text-encoder bundle (what ``strata export`` writes without ``--no-text``)."""
    from strata.model_export.text_encoder import export_text_encoder

    root = tmp_path_factory.mktemp("text-models") / "registry"
    shutil.copytree(models_registry_dir, root)
    export_text_encoder(root, shard=False, int8=False)
    return root


@pytest.fixture
def served(text_models_registry: Path, fresh_valkey) -> Iterator[tuple[TestClient, OriginNode]]:
    c = fresh_valkey.client()
    try:
        c.hset(session_key("default", SESSION), mapping={"recent": push_recent(b"", SEEN[::-1])})
    finally:
        c.close()
    node = OriginNode(load_settings(origin={"registry": str(text_models_registry), "retrieve": RETRIEVE,
                                            "store": {"url": fresh_valkey.url, "timeout_ms": 500.0}}))
    with TestClient(build_app(node)) as client:
        assert node.state.text is not None and node.state.models.pipeline.item_tower is not None
        yield client, node


def _two_tower_rows(node: OriginNode) -> set[int]:
    """Catalog rows the two-tower source adds for the session (the pipeline's stages up to it, as served;
    the profile stage is handed the session the store holds)."""
    from strata.origin.profiles import Profile
    from strata.origin.stages.ctx import OriginCtx
    from strata.shared.serving.codecs import JSON

    body = b'{"user_id": "%s", "session_id": "%s", "k": 10, "context": {"consent": true}}' % (
        USER.encode(), SESSION.encode())
    ctx = OriginCtx(0, body, None, None, JSON, node.state)
    for stage in node.recommend.pipeline.stages:
        if stage.name == "profile":
            ctx.profile = Profile(None, (), recent=tuple(SEEN))
        else:
            stage.run(ctx)
        if stage.name == "two_tower_source":
            return {r for r, names in ctx.sources.items() if "two_tower_source" in names}
    raise AssertionError("no two_tower_source stage")


def _user(node: OriginNode) -> np.ndarray:
    models = node.state.models
    return models.pipeline.tower.vectors(models.tower_input(None, tuple(SEEN)))[0]


def _post(client: TestClient, **item) -> None:
    r = client.post("/v1/items", json={"items": [item]})
    assert r.status_code == 200, r.text


def test_the_serving_recipe_reproduces_the_exported_item_vectors(served) -> None:
    """Text encoder + category map + price bucket at serving time = what the export computed."""
    _, node = served
    state, models = node.state, node.state.models
    rows = np.flatnonzero(models.row_of_model >= 0)[:50]
    cat_rows = models.row_of_model[rows]
    vecs, _ = tower_vectors(models, state.catalog, cat_rows, rows, state.text.encoder)
    assert np.abs(vecs - models.pipeline.item_vectors[rows]).max() < 1e-4


def test_a_posted_item_comes_from_the_two_tower_for_a_matching_taste(served) -> None:
    client, node = served
    state, models = node.state, node.state.models
    cat, user = state.catalog, _user(node)
    # the new item takes the facts (title, category, price) the item tower places nearest this user
    rows = np.flatnonzero(models.row_of_model >= 0)
    rows = models.row_of_model[rows]
    rows = rows[(cat.stock[rows] > 0) & ~cat.age_restricted[rows]]
    vecs, _ = tower_vectors(models, cat, rows, np.full(rows.size, -1), state.text.encoder)
    best = int(rows[np.argmax(vecs @ user)])
    new_vec = vecs[np.argmax(vecs @ user)]
    known = models.pipeline.item_vectors[models.row_of_model >= 0] @ user
    assert (known > new_vec @ user).sum() < RETRIEVE // 2      # the test means something: it belongs in the top
    assert "NEW-TT-1" not in cat.row
    _post(client, item_id="NEW-TT-1", title=cat.titles[best], category=cat.categories[best],
          price=float(cat.prices[best]), stock=3, age_restricted=False)
    row = cat.row["NEW-TT-1"]
    assert row in _two_tower_rows(node)
    assert np.allclose(models.cold[row], new_vec, atol=1e-5)
    d = client.post("/v1/recommend", json={"user_id": USER, "session_id": SESSION, "k": 10,
                                           "context": {"consent": True}}).json()
    assert not d["degraded"] and d["items"]
    # out of stock: gone from the source (the index filter), back when restocked
    _post(client, item_id="NEW-TT-1", title=cat.titles[best], category=cat.categories[best],
          price=float(cat.prices[best]), stock=0, age_restricted=False)
    assert row not in _two_tower_rows(node)
    _post(client, item_id="NEW-TT-1", title=cat.titles[best], category=cat.categories[best],
          price=float(cat.prices[best]), stock=1, age_restricted=False)
    assert row in _two_tower_rows(node)


def test_a_known_item_with_new_facts_gets_a_new_vector(served) -> None:
    client, node = served
    state, models = node.state, node.state.models
    cat = state.catalog
    item = "SKU-000100"
    m = int(models.model_of([item])[0])
    r = cat.row[item]
    old = models.pipeline.item_vectors[m].copy()
    models.sentinels(SENTINELS)                                        # the search's cached sample, built before
    other = next(c for c in models.category_of if c != cat.categories[r])
    _post(client, item_id=item, title="Quartz hiking lantern deluxe", category=other, price=float(cat.prices[r]) * 3,
          stock=5, age_restricted=False)
    new = models.pipeline.item_vectors[m]
    expected, _ = tower_vectors(models, cat, np.array([r]), np.array([m]), state.text.encoder)
    assert not np.allclose(new, old, atol=1e-3)
    assert np.allclose(new, expected[0], atol=1e-5)
    stored = models.index.vectors([item])[item]
    assert np.allclose(stored, new / np.linalg.norm(new), atol=1e-5)
    assert models.pipeline.stats.category[m] == models.category_of[other]
    sample, sample_vecs = models.sentinels(SENTINELS)                  # 500 items: every one is in the sample
    assert np.allclose(sample_vecs[np.searchsorted(sample, m)], new)
