"""Parity gate: the exported ONNX graph must reproduce the source model before a bundle may exist.

Compared on >= MIN_ROWS real feature rows (not random noise), because a wrong transpose or a dropped
bias can agree on zeros and still be wrong on the inputs the edge will actually see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from strata.shared.errors import ParityError
from strata.shared.models.bundle import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5
MIN_ROWS = 10_000


def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_predict(path: Path, x: np.ndarray, input_name: str = INPUT_NAME,
                output_name: str = OUTPUT_NAME) -> np.ndarray:
    """One run of the graph; integer inputs (item indices) keep int64, everything else goes in as float32."""
    x = np.ascontiguousarray(x, dtype=np.int64 if np.asarray(x).dtype.kind in "iu" else np.float32)
    return ort_session(path).run([output_name], {input_name: x})[0]


def check_parity_feeds(onnx_path: Path, source: Callable[[dict[str, np.ndarray]], np.ndarray],
                       feeds: dict[str, np.ndarray], output_name: str, tolerance: float = TOLERANCE,
                       min_rows: int = MIN_ROWS) -> dict:
    """``check_parity`` for a graph with several inputs (``feeds``: name -> array, same rows each)."""
    rows = int(next(iter(feeds.values())).shape[0])
    if rows < min_rows:
        raise ParityError(f"parity needs >= {min_rows} rows, got {rows}", field="parity.rows")
    want = np.asarray(source(feeds), dtype=np.float64)
    sess = ort_session(onnx_path)
    names = {i.name for i in sess.get_inputs()}  # an input the graph does not use was pruned by the exporter
    got = sess.run([output_name], {k: np.ascontiguousarray(v) for k, v in feeds.items() if k in names})[0]
    if got.shape != want.shape:
        raise ParityError(f"ONNX output shape {got.shape} != source shape {want.shape}", field="parity")
    diff = np.abs(got.astype(np.float64) - want)
    max_diff = float(np.max(diff)) if diff.size and np.all(np.isfinite(diff)) else (0.0 if not diff.size else float("inf"))
    if not max_diff <= tolerance:
        raise ParityError(f"max |ORT - source| = {max_diff:.3g} > {tolerance:g} over {rows} rows", field="parity")
    logger.info("parity ok: max |ORT - source| = %.3g over %d rows", max_diff, rows)
    return {"max_abs_diff": max_diff, "rows": rows, "tolerance": tolerance}


def check_parity(onnx_path: Path, source: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                 tolerance: float = TOLERANCE, min_rows: int = MIN_ROWS, input_name: str = INPUT_NAME,
                 output_name: str = OUTPUT_NAME) -> dict:
    """Return {max_abs_diff, rows, tolerance}; raise ParityError if ORT and the source disagree."""
    if x.shape[0] < min_rows:
        raise ParityError(f"parity needs >= {min_rows} rows, got {x.shape[0]}", field="parity.rows")
    want = np.asarray(source(x), dtype=np.float32)
    got = ort_predict(onnx_path, x, input_name, output_name)
    if got.shape != want.shape:
        raise ParityError(f"ONNX output shape {got.shape} != source shape {want.shape}", field="parity")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    max_diff = float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf")
    report = {"max_abs_diff": max_diff, "rows": int(x.shape[0]), "tolerance": tolerance}
    if not max_diff <= tolerance:
        worst = int(np.argmax(np.nan_to_num(diff, nan=np.inf)))  # flat index: outputs may be [N, d]
        raise ParityError(
            f"max |ORT - source| = {max_diff:.3g} > {tolerance:g} over {x.shape[0]} rows "
            f"(worst row {worst // max(1, diff.size // diff.shape[0])}: ORT {float(got.flat[worst]):.6f}, source {float(want.flat[worst]):.6f})",
            field="parity",
        )
    logger.info("parity ok: max |ORT - source| = %.3g over %d rows", max_diff, x.shape[0])
    return report
