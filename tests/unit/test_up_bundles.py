"""Which bundles ``strata up`` exports, and on which world (``deploy.bundles``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.deploy.bundles import ALL_MODELS, missing_models, world_config
from strata.shared.errors import ConfigError


def _bundle(root: Path, model: str, manifest: dict | None = None) -> None:
    (root / model / "1.0.0").mkdir(parents=True)
    (root / model / "CURRENT").write_text("1.0.0\n")
    (root / model / "1.0.0" / "manifest.json").write_text(json.dumps(manifest or {}))


def test_missing_models_in_dependency_order(tmp_path: Path) -> None:
    assert missing_models(tmp_path) == list(ALL_MODELS)
    _bundle(tmp_path, "edge-scorer")
    _bundle(tmp_path, "ranker")
    assert missing_models(tmp_path) == ["text-encoder", "retrieval"]


def test_the_missing_bundles_train_on_the_edge_scorers_world(tmp_path: Path) -> None:
    _bundle(tmp_path, "edge-scorer", {"data": {"source": "synthetic-world", "seed": 3, "n_items": 500,
                                               "n_users": 200, "n_sessions": 3000}})
    cfg = world_config(tmp_path)
    assert (cfg.seed, cfg.n_items, cfg.n_users, cfg.n_sessions) == (3, 500, 200, 3000)


def test_a_real_catalog_cannot_be_matched_by_a_synthetic_export(tmp_path: Path) -> None:
    _bundle(tmp_path, "edge-scorer", {"data": {"source": "synthetic-world", "seed": 7, "n_items": 4000,
                                               "n_users": 3000, "n_sessions": 40000},
                                      "serving_catalog": "online-retail"})
    with pytest.raises(ConfigError, match="strata export --data"):
        world_config(tmp_path)
