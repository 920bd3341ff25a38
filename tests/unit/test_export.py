"""End-to-end export into a temporary registry: layout, checksums, CURRENT, versions, the parity gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from onnx import numpy_helper

from strata.model_export import onnx_export
from strata.model_export.export import export_bundle
from strata.model_export.registry import MODEL_NAME
from strata.shared.contracts.api import CHANNELS
from strata.shared.errors import BundleError, ParityError
from strata.shared.models import bundle as layout
from strata.shared.ranking.features import EMBED_DIM, FEATURE_DIM, FEATURE_SPEC_VERSION, ITEM_DIM, item_block

SMALL = {"seed": 5, "n_items": 1_500, "n_users": 300, "n_sessions": 4_000, "epochs": 2}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reg")
    steps: list[tuple[str, float]] = []
    result = export_bundle(root, progress=lambda step, fraction: steps.append((step, fraction)), **SMALL)
    return root, result, steps


def test_bundle_verifies_and_current_points_at_it(exported) -> None:
    root, result, _ = exported
    assert result.version == "1.0.0"
    assert result.bundle_dir == root / MODEL_NAME / "1.0.0"
    assert layout.read_current(root, MODEL_NAME) == "1.0.0"
    manifest = layout.verify_bundle(result.bundle_dir, FEATURE_SPEC_VERSION)
    assert set(manifest["files"]) == {layout.MODEL_FILE, layout.INT8_FILE, layout.ITEMS_FILE,
                                      layout.ITEM_FEATURES_FILE, layout.ITEM_VECTORS_FILE, layout.POOLS_FILE,
                                      layout.COVIS_NEIGHBORS_FILE, layout.COVIS_SCORES_FILE,
                                      layout.ITEM_INDEX_FILE, layout.ITEM_INDEX_META_FILE}
    assert sorted(p.name for p in (root / MODEL_NAME).iterdir()) == ["1.0.0", "CURRENT"]  # no staging left


def test_manifest_contract(exported) -> None:
    _, result, _ = exported
    m = json.loads((result.bundle_dir / layout.MANIFEST_FILE).read_text())
    assert m["name"] == "edge-scorer" and m["version"] == "1.0.0"
    assert m["created"].endswith("Z")
    assert m["inputs"] == [{"name": "features", "dtype": "float32", "shape": ["N", FEATURE_DIM]}]
    assert m["outputs"] == [{"name": "p_click", "dtype": "float32", "shape": ["N"]}]
    assert m["feature_spec_version"] == FEATURE_SPEC_VERSION
    assert len(m["data_fingerprint"]) == 64
    assert m["parity"]["rows"] >= 10_000 and m["parity"]["max_abs_diff"] <= 1e-5
    assert m["training"]["epochs"] == 2 and m["training"]["seed"] == 5
    metrics = m["metrics"]
    for key in ("auc", "logloss"):
        assert 0 < metrics[key] < 1 and 0 < metrics["baseline_popularity"][key] < 1
    assert metrics["auc"] > metrics["baseline_popularity"]["auc"]
    assert metrics["oracle"]["auc"] >= metrics["auc"]
    assert result.metrics["parity"] == m["parity"]


def test_int8_variant_and_its_accuracy_change_are_recorded(exported) -> None:
    _, result, _ = exported
    int8 = result.metrics["int8"]
    assert set(int8) >= {"auc", "logloss", "auc_change", "logloss_change", "max_abs_diff_vs_fp32"}
    assert int8["auc_change"] == pytest.approx(int8["auc"] - result.metrics["auc"], abs=2e-6)
    assert "MatMulInteger" in onnx_export.op_types(result.bundle_dir / layout.INT8_FILE)


def test_served_graph_is_minimal_with_a_dynamic_batch(exported) -> None:
    _, result, _ = exported
    path = result.bundle_dir / layout.MODEL_FILE
    assert set(onnx_export.op_types(path)) <= {"Gemm", "Relu", "Sigmoid", "Reshape", "Constant", "Flatten"}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feats = np.load(result.bundle_dir / layout.ITEM_FEATURES_FILE)
    for n in (1, 7, 300):
        x = np.zeros((n, FEATURE_DIM), dtype=np.float32)
        x[:, :ITEM_DIM] = feats[:n]
        out = sess.run([layout.OUTPUT_NAME], {layout.INPUT_NAME: x})[0]
        assert out.shape == (n,) and out.dtype == np.float32
        assert np.all((out > 0) & (out < 1))


def test_item_tables_match_the_shared_feature_builder(exported) -> None:
    _, result, _ = exported
    table = pq.read_table(result.bundle_dir / layout.ITEMS_FILE)
    assert table.column_names == ["item_id", "category", "category_idx", "brand", "price", "title",
                                  "age_restricted", "popularity"]
    items = {name: table[name].to_numpy() for name in table.column_names}
    assert len(items["item_id"]) == SMALL["n_items"] and len(set(items["item_id"])) == SMALL["n_items"]
    assert set(np.unique(items["age_restricted"]).tolist()) <= {0, 1}
    feats = np.load(result.bundle_dir / layout.ITEM_FEATURES_FILE)
    expected = item_block(items["category_idx"], items["price"], items["popularity"], items["age_restricted"])
    np.testing.assert_array_equal(feats, expected)
    vecs = np.load(result.bundle_dir / layout.ITEM_VECTORS_FILE)
    assert vecs.shape == (SMALL["n_items"], EMBED_DIM) and vecs.dtype == np.float32
    norms = np.linalg.norm(vecs, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0)) and (norms == 0).any() and (norms > 0).mean() > 0.5


def test_pools_per_channel_and_default(exported) -> None:
    _, result, _ = exported
    pools = json.loads((result.bundle_dir / layout.POOLS_FILE).read_text())
    assert set(pools) == {*CHANNELS, "default"}
    items = pq.read_table(result.bundle_dir / layout.ITEMS_FILE, columns=["item_id", "popularity"]).to_pydict()
    known = set(items["item_id"])
    pop = dict(zip(items["item_id"], items["popularity"], strict=True))
    for ids in pools.values():
        assert len(ids) == 500 and len(set(ids)) == 500 and set(ids) <= known
    assert [pop[i] for i in pools["default"]] == sorted(pop.values(), reverse=True)[:500]


def test_progress_is_monotone_and_ends_done(exported) -> None:
    _, _, steps = exported
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and steps[-1] == ("done", 1.0)
    assert [s for s, _ in steps if s != "train"][:4] == ["world", "features", "export", "parity"]


def test_next_export_is_next_patch_and_reproducible(exported) -> None:
    root, first, _ = exported
    second = export_bundle(root, int8=False, **SMALL)
    assert second.version == "1.0.1" and layout.read_current(root, MODEL_NAME) == "1.0.1"
    m1, m2 = (layout.verify_bundle(r.bundle_dir) for r in (first, second))
    assert m2["data_fingerprint"] == m1["data_fingerprint"]
    for name in (layout.MODEL_FILE, layout.ITEMS_FILE, layout.ITEM_FEATURES_FILE, layout.POOLS_FILE,
                 layout.COVIS_NEIGHBORS_FILE, layout.COVIS_SCORES_FILE):
        assert m2["files"][name] == m1["files"][name], name  # same seed -> byte-identical artefacts
    assert layout.INT8_FILE not in m2["files"] and "int8" not in m2["metrics"]
    with pytest.raises(BundleError, match="already exists"):
        export_bundle(root, version="1.0.1", **SMALL)
    with pytest.raises(BundleError, match="X.Y.Z"):
        export_bundle(root, version="2.0", **SMALL)


def test_broken_parity_refuses_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = onnx_export.to_onnx
    (tmp_path / MODEL_NAME).mkdir()
    (tmp_path / MODEL_NAME / "CURRENT").write_text("0.9.0\n")
    (tmp_path / MODEL_NAME / "0.9.0").mkdir()

    def perturbed(model, path: Path) -> Path:
        real(model, path)
        graph = onnx.load(str(path))
        bias = graph.graph.initializer[-1]  # output-layer bias: shifts every logit
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(1e-3), bias.name))
        onnx.save(graph, str(path))
        return path

    monkeypatch.setattr(onnx_export, "to_onnx", perturbed)
    with pytest.raises(ParityError, match=r"max \|ORT - source\|"):
        export_bundle(tmp_path, **SMALL)
    assert sorted(p.name for p in (tmp_path / MODEL_NAME).iterdir()) == ["0.9.0", "CURRENT"]
    assert (tmp_path / MODEL_NAME / "CURRENT").read_text() == "0.9.0\n"
