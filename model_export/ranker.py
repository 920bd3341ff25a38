"""The deep ranker: an MLP over ``shared.models.ranker_features`` rows, trained listwise per query.

Each training query is one invoice inside the label window at the end of the training split, its
candidates built exactly as serving builds them; the loss is the softmax cross-entropy of the query's
candidates against its bought items (a listwise loss: it optimises the order within a query, which is
what NDCG measures). Inputs are standardised inside the graph (mean/std are buffers), so the ONNX file
takes the raw feature rows the shared code produces.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from strata.shared.models.ranker_features import N_FEATURES

logger = logging.getLogger(__name__)

FEATURES_INPUT = "features"
SCORE_OUTPUT = "score"
OPSET = 17


@dataclass(frozen=True, slots=True)
class RankerParams:
    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 12
    queries_per_batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-5
    ensemble: int = 1  # members trained with seeds seed, seed+1, ...; the exported graph averages their scores
    seed: int = 7

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


class Ranker(nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", torch.as_tensor(1.0 / std, dtype=torch.float32))
        layers: list[nn.Module] = []
        width = N_FEATURES
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.mean) * self.inv_std).squeeze(-1)


class RankerEnsemble(nn.Module):
    """The mean score of independently seeded rankers: the same ranking signal with less seed noise."""

    def __init__(self, members: list[Ranker]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(features) for m in self.members], dim=0).mean(dim=0)


@dataclass(slots=True)
class TrainedRanker:
    model: nn.Module  # Ranker, or RankerEnsemble when params.ensemble > 1
    params: RankerParams
    queries: int
    rows: int
    final_loss: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()


def train_ranker(x: np.ndarray, label: np.ndarray, ptr: np.ndarray,
                 params: RankerParams = RankerParams()) -> TrainedRanker:
    """``x`` [rows, N_FEATURES], ``label`` 0/1 per row, queries own rows ptr[q]:ptr[q+1]; queries without
    a positive teach nothing listwise and are dropped. ``params.ensemble`` > 1 trains that many members."""
    if params.ensemble <= 1:
        return _train_one(x, label, ptr, params)
    members = [_train_one(x, label, ptr, replace(params, seed=params.seed + i, ensemble=1))
               for i in range(params.ensemble)]
    model = RankerEnsemble([m.model for m in members]).eval()
    loss = round(float(np.mean([m.final_loss for m in members])), 5)
    return TrainedRanker(model, params, members[0].queries, members[0].rows, loss)


def _train_one(x: np.ndarray, label: np.ndarray, ptr: np.ndarray, params: RankerParams) -> TrainedRanker:
    torch.manual_seed(params.seed)
    sizes = np.diff(ptr)
    q_of_row = np.repeat(np.arange(sizes.size), sizes)
    positives = np.bincount(q_of_row, weights=label, minlength=sizes.size)
    queries = np.flatnonzero((positives > 0) & (sizes > 0))
    if queries.size == 0:
        raise ValueError("no training query has a bought item among its candidates")
    std = x.std(axis=0)
    model = Ranker(x.mean(axis=0), np.where(std > 1e-6, std, 1.0), params.hidden)
    width = int(sizes[queries].max())
    # [Q, width] row index per query slot, -1 padded
    slot = np.full((queries.size, width), -1, dtype=np.int64)
    j = np.arange(width)
    starts, lens = ptr[queries], sizes[queries]
    valid = j[None, :] < lens[:, None]
    slot[valid] = (starts[:, None] + j[None, :])[valid]
    xt = torch.as_tensor(np.vstack([x, np.zeros((1, x.shape[1]))]), dtype=torch.float32)  # last row = padding
    yt = torch.as_tensor(np.r_[label, 0.0], dtype=torch.float32)
    slot_t = torch.as_tensor(np.where(slot < 0, x.shape[0], slot))
    valid_t = torch.as_tensor(valid)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    gen = torch.Generator().manual_seed(params.seed)
    loss_value = float("nan")
    model.train()
    for epoch in range(params.epochs):
        perm = torch.randperm(queries.size, generator=gen)
        total, steps = 0.0, 0
        for lo in range(0, queries.size, params.queries_per_batch):
            b = perm[lo:lo + params.queries_per_batch]
            rows, ok = slot_t[b], valid_t[b]
            scores = model(xt[rows]).masked_fill(~ok, -1e9)
            y = yt[rows]
            log_p = torch.log_softmax(scores, dim=1)
            loss = -((log_p * y).sum(dim=1) / y.sum(dim=1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        loss_value = total / max(steps, 1)
        logger.info("ranker epoch %d: listwise loss %.4f (%d queries)", epoch + 1, loss_value, queries.size)
    model.eval()
    return TrainedRanker(model, params, int(queries.size), int(x.shape[0]), round(loss_value, 5))


def export_ranker(ranker: TrainedRanker, path: Path) -> Path:
    """``features`` float32 [N, N_FEATURES] -> ``score`` float32 [N] (higher = rank first)."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ranker.model.eval(), (torch.zeros(2, N_FEATURES),), str(path),
                          input_names=[FEATURES_INPUT], output_names=[SCORE_OUTPUT],
                          dynamic_axes={FEATURES_INPUT: {0: "N"}, SCORE_OUTPUT: {0: "N"}}, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)))
    return path
