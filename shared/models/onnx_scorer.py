"""A bundle's ONNX click model in one onnxruntime session with explicit thread settings (every tier
scores with it: the same model and ``shared.ranking.features`` rows, no train/serve skew)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strata.shared.errors import BundleError
from strata.shared.models.bundle import INPUT_NAME, OUTPUT_NAME
from strata.shared.models.onnx import open_session


class OnnxScorer:
    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._sess = open_session(model_path, threads)
        names_in = [i.name for i in self._sess.get_inputs()]
        names_out = [o.name for o in self._sess.get_outputs()]
        if names_in != [INPUT_NAME] or OUTPUT_NAME not in names_out:
            raise BundleError(f"model io {names_in} -> {names_out}, expected [{INPUT_NAME}] -> {OUTPUT_NAME}")
        self._outputs = [OUTPUT_NAME]
        self._run = self._sess.run

    def score(self, x: np.ndarray) -> np.ndarray:
        """Click probability per row, float32 [n]."""
        return self._run(self._outputs, {INPUT_NAME: x})[0].reshape(-1)
