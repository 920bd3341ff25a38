"""Torch -> ONNX for the edge scorer, plus the optional dynamic-int8 variant.

Uses the TorchScript exporter (``dynamo=False``): it needs no onnxscript and emits the minimal graph
Gemm -> Relu -> Gemm -> Sigmoid -> Reshape that the edge runs per request.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from strata.shared.models.bundle import INPUT_NAME, OUTPUT_NAME
from strata.shared.ranking.features import FEATURE_DIM

logger = logging.getLogger(__name__)

OPSET = 17


def to_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Write ``model`` as ONNX: input "features" float32 [N, FEATURE_DIM] -> "p_click" float32 [N]."""
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(2, FEATURE_DIM),), str(path), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    logger.info("exported %s: ops %s", path.name, [n.op_type for n in graph.graph.node])
    return path


def to_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 weight quantisation; activations stay float and are quantised per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice to the root logger on every call
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return dst


def op_types(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]
