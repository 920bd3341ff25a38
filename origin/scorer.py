"""The ranker: the edge scorer's ONNX model over ``shared.ranking.features`` rows (one onnxruntime session).

The same model and features the edge ranks with (no train/serve skew); a deeper ranker trained for the
origin would replace this class behind the same ``score(x)``.
"""

from __future__ import annotations

from strata.shared.models.onnx_scorer import OnnxScorer


class OnnxRanker(OnnxScorer):
    name = "edge-scorer-onnx"
