"""Sentence embeddings of item and query text without torch: ``tokenizers`` + onnxruntime.

The ``text-encoder`` bundle (written by ``model_export.text_encoder``) holds all-MiniLM-L6-v2 as ONNX
with mean pooling and L2 normalisation inside the graph, so ``embedding`` is the sentence-transformers
vector itself, and the model's own ``tokenizer.json``. Layout:

    <registry>/text-encoder/<version>/
        model.onnx              input_ids, attention_mask, token_type_ids int64 [N, L] -> embedding float32 [N, 384]
        tokenizer.json          the model's WordPiece tokenizer (``tokenizers`` library)
        item_text.parquet       item_id, text: the catalog the vectors below were computed from (optional)
        item_text_vectors.npy   float32 [n_items, 384], row i = item_text.parquet row i (optional)
        text_index.tar          Qdrant Edge shard of those vectors, HNSW built (optional, ``shared.models.item_shard``)
        manifest.json           name, version, dim, max_length, parity, catalog, files {name: sha256}

Texts are batched by token length (short titles are not padded to a long one's length).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models import bundle as B

logger = logging.getLogger(__name__)

TEXT_MODEL = "text-encoder"
TOKENIZER_FILE = "tokenizer.json"
ITEM_TEXT_FILE = "item_text.parquet"
ITEM_TEXT_VECTORS_FILE = "item_text_vectors.npy"
TEXT_INDEX_FILE = "text_index.tar"
REQUIRED_FILES = (B.MODEL_FILE, TOKENIZER_FILE)
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embedding"
TEXT_DIM = 384
MAX_LENGTH = 256          # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


def item_text(title: str, category: str) -> str:
    """What an item is embedded as (export and serving call this one function: no skew)."""
    return f"{title} ({category})"


def tower_text(title: str) -> str:
    """What the two-tower's item tower and the ranker's text affinity embed: the title alone (category and
    price are their own inputs). Training (``model_export.item_text``) and serving call this one function."""
    return " ".join(str(title).split())


class TextEncoder:
    """``encode(texts)`` -> float32 [N, dim] unit vectors. One onnxruntime session, built once."""

    def __init__(self, model_path: Path | str, tokenizer_path: Path | str, *, max_length: int = MAX_LENGTH,
                 threads: int = 1, batch_size: int = 64) -> None:
        from tokenizers import Tokenizer

        from strata.shared.models.onnx import open_session

        try:
            tok = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:
            raise BundleError(f"cannot read tokenizer {tokenizer_path}: {exc}") from exc
        tok.enable_truncation(max_length)
        tok.no_padding()            # padded per batch below, to the batch's longest text
        self._tok = tok
        self._pad_id = tok.token_to_id("[PAD]") or 0
        self._sess = open_session(model_path, threads, what="text encoder")
        names = tuple(i.name for i in self._sess.get_inputs())
        if set(names) != set(INPUT_NAMES):
            raise BundleError(f"text encoder {model_path} takes {names}, expected {INPUT_NAMES}")
        self.dim = int(self._sess.get_outputs()[0].shape[-1])
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encs = self._tok.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(lengths, kind="stable")
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            width = int(lengths[idx].max())
            ids = np.full((idx.shape[0], width), self._pad_id, dtype=np.int64)
            mask = np.zeros((idx.shape[0], width), dtype=np.int64)
            for j, i in enumerate(idx.tolist()):
                e = encs[i].ids
                ids[j, :len(e)] = e
                mask[j, :len(e)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            out[idx] = self._sess.run([OUTPUT_NAME], feeds)[0]
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def load_text_encoder(bundle_dir: Path | str, threads: int = 1) -> tuple[TextEncoder, dict]:
    """A verified text-encoder bundle's encoder and manifest (BundleError if anything is off)."""
    path = Path(bundle_dir)
    manifest = B.verify_bundle(path, required=REQUIRED_FILES)
    if manifest.get("name") != TEXT_MODEL:
        raise BundleError(f"bundle {path} is {manifest.get('name')!r}, not a {TEXT_MODEL} bundle")
    enc = TextEncoder(path / B.MODEL_FILE, path / TOKENIZER_FILE,
                      max_length=int(manifest.get("max_length", MAX_LENGTH)), threads=threads)
    if enc.dim != int(manifest.get("dim", enc.dim)):
        raise BundleError(f"text encoder of {path} outputs {enc.dim} dims, manifest says {manifest.get('dim')}")
    return enc, manifest
