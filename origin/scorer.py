"""The ranker: the edge scorer's ONNX model over ``shared.features`` rows (one onnxruntime session).

The same model and features the edge ranks with (no train/serve skew); a deeper ranker trained for the
origin would replace this class behind the same ``score(x)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.bundle import INPUT_NAME, OUTPUT_NAME
from shared.errors import BundleError


class OnnxRanker:
    name = "edge-scorer-onnx"

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BundleError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        names = [i.name for i in self._sess.get_inputs()]
        if names != [INPUT_NAME]:
            raise BundleError(f"model inputs {names}, expected [{INPUT_NAME}]")

    def score(self, x: np.ndarray) -> np.ndarray:
        """Click probability per row, float32 [n]."""
        return self._sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0].reshape(-1)
