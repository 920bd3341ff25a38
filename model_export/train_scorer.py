"""Train the edge click scorer: a genuinely tiny MLP (FEATURE_DIM -> 32 -> 1, sigmoid) in torch.

Tiny on purpose: it runs on every edge request inside a ~60 us budget. Training is seeded and single-
threaded so the same world gives the same weights, and it takes a few seconds on a laptop core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from strata.shared.ranking.features import FEATURE_DIM

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainParams:
    hidden: int = 32
    epochs: int = 6
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 7

    def to_dict(self) -> dict:
        return asdict(self)


class ClickScorer(nn.Module):
    """Outputs p_click of shape [N] so the ONNX graph ends in Sigmoid + Reshape, nothing else."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURE_DIM, hidden)
        self.out = nn.Linear(hidden, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x))).reshape(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def train_scorer(x: np.ndarray, y: np.ndarray, params: TrainParams,
                 on_epoch: Callable[[int, float], None] | None = None) -> ClickScorer:
    torch.manual_seed(params.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = ClickScorer(params.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
        gen = torch.Generator().manual_seed(params.seed)
        for epoch in range(params.epochs):
            perm = torch.randperm(xt.shape[0], generator=gen)
            total = 0.0
            for start in range(0, xt.shape[0], params.batch_size):
                idx = perm[start:start + params.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model.logits(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += loss.item() * idx.shape[0]
            mean = total / xt.shape[0]
            logger.debug("epoch %d train logloss %.5f", epoch, mean)
            if on_epoch is not None:
                on_epoch(epoch, mean)
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def predict(model: ClickScorer, x: np.ndarray) -> np.ndarray:
    """The source model's p_click, float32 — what parity compares onnxruntime against."""
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy().astype(np.float32)
