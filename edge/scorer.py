"""The edge's scorer: the bundle's ONNX click model (``shared.onnx_scorer``)."""

from __future__ import annotations

from strata.shared.onnx_scorer import OnnxScorer as EdgeScorer

__all__ = ["EdgeScorer"]
