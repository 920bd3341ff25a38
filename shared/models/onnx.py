"""One way to open an ONNX model for serving: CPU, explicit threads, sequential execution, full graph
optimisation, and no spinning threads (an idle intra-op pool must not burn a core that the event loop or
another process needs). Every serving model (edge scorer, user/item towers, ranker, text encoder) opens here."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from strata.shared.errors import BundleError


def session_options(threads: int = 1) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def open_session(path: Path | str, threads: int = 1, what: str = "onnxruntime") -> ort.InferenceSession:
    """The model at ``path``; ``BundleError`` ("<what> cannot load <path>: ...") when onnxruntime refuses it."""
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"{what} cannot load {path}: {exc}") from exc
