"""The edge's scorer: the bundle's ONNX click model (``shared.models.onnx_scorer``)."""

from __future__ import annotations

from strata.shared.models.onnx_scorer import OnnxScorer as EdgeScorer

__all__ = ["EdgeScorer"]
