"""Two-tower retrieval: an item tower and a user/session tower trained with in-batch sampled softmax.

Item tower: item id embedding + derived category embedding + price-bucket embedding + a learned linear
projection of the item's FIXED text vector (MiniLM over its title, ``model_export.item_text``), then an
MLP, L2-normalised. The ids of items no training pair touches are zeroed after training, so for them (and
for an item added after training, through the item tower with no id) the vector comes from category,
price and title alone. Optionally (``id_dropout``) the id embedding is dropped for a share of the
training lookups so the content path must carry items on its own. User/session tower: the customer's last ``history_len`` purchases (most recent first,
``shared.models.ranker_features.tower_input``) through the SAME item representation plus a recency-position
embedding, pooled by attention and by mean (the session encoder), then an MLP, L2-normalised. An empty
history gives a learned "anyone" vector, which ranks like popularity. Pairs are (history before an
invoice -> one item of that invoice) from the training baskets only; the softmax runs over the batch's
items with the log-frequency correction for in-batch sampling, and items of the same invoice (or the
same item twice) are not used as each other's negatives.

Serving gets the user tower as ONNX (``history`` int64 [N, L] -> ``user_vector`` float32 [N, dim]; the
per-item representation table is folded into the graph, so its size follows n_items x dim, not the
text width), the item vectors as an array, and the item tower as ONNX (``category``, ``price_bucket``,
``text`` and optionally ``item`` -> ``item_vector``) to embed items the export never saw; all come from
the same torch module, so their dot products match.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from strata.model_export.evaluation.baskets import Baskets
from strata.model_export.evaluation.split import temporal_split
from strata.model_export.item_stats import histories
from strata.shared.models.ranker_features import tower_input

logger = logging.getLogger(__name__)

HISTORY_INPUT = "history"
USER_OUTPUT = "user_vector"
ITEM_INPUTS = ("item", "category", "price_bucket", "text")
ITEM_OUTPUT = "item_vector"
OPSET = 17


@dataclass(frozen=True, slots=True)
class TowerParams:
    dim: int = 64
    history_len: int = 30
    price_buckets: int = 16
    epochs: int = 4
    batch: int = 1024
    lr: float = 3e-3
    temperature: float = 0.07
    max_pairs_per_invoice: int = 30
    # share of training lookups that see no id embedding (the content path only); 0.3 cost returning
    # customers ~0.008 NDCG@10 on Online Retail (seeds 7, 8), so off: ids never trained are zeroed instead
    id_dropout: float = 0.0
    text: bool = True  # use the items' text vectors (False: id + category + price only)
    seed: int = 7

    def to_dict(self) -> dict:
        return asdict(self)


def price_buckets(price: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 bucket per item, the n-1 edges over log price): quantile buckets, so each is well filled."""
    logp = np.log(np.maximum(np.asarray(price, dtype=np.float64), 0.01))
    edges = np.unique(np.quantile(logp, np.linspace(0, 1, n + 1)[1:-1])) if logp.size else np.zeros(0)
    return np.searchsorted(edges, logp, side="right").astype(np.int64), edges


class TwoTower(nn.Module):
    def __init__(self, category: np.ndarray, bucket: np.ndarray, params: TowerParams,
                 text: np.ndarray | None = None) -> None:
        super().__init__()
        n_items, d = int(category.size), params.dim
        n_cat, n_bucket = int(category.max(initial=0)) + 1, params.price_buckets
        self.pad = n_items
        self.n_categories, self.n_buckets = n_cat, n_bucket
        self.id_dropout = params.id_dropout
        self.id_emb = nn.Embedding(n_items + 1, d, padding_idx=n_items)
        self.cat_emb = nn.Embedding(n_cat + 1, d, padding_idx=n_cat)
        self.price_emb = nn.Embedding(n_bucket + 1, d, padding_idx=n_bucket)
        nn.init.normal_(self.id_emb.weight, std=0.02)
        with torch.no_grad():
            self.id_emb.weight[n_items].zero_()
        self.register_buffer("item_cat", torch.as_tensor(np.r_[category, n_cat], dtype=torch.long))
        self.register_buffer("item_bucket", torch.as_tensor(np.r_[bucket, n_bucket], dtype=torch.long))
        text = np.zeros((n_items, 0), np.float32) if text is None else np.asarray(text, dtype=np.float32)
        if text.shape[0] != n_items:
            raise ValueError(f"{text.shape[0]} text vectors for {n_items} items")
        self.text_dim = int(text.shape[1])
        self.register_buffer("item_text", torch.as_tensor(np.vstack([text, np.zeros((1, self.text_dim), np.float32)])))
        self.text_proj = nn.Linear(self.text_dim, d, bias=False) if self.text_dim else None
        self.item_out = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.pos_emb = nn.Embedding(params.history_len, d)
        self.attend = nn.Linear(d, 1)
        self.user_mlp = nn.Sequential(nn.Linear(2 * d + 1, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def content(self, category: torch.Tensor, bucket: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        z = self.cat_emb(category) + self.price_emb(bucket)
        return z + self.text_proj(text) if self.text_proj is not None else z

    def item_repr(self, idx: torch.Tensor) -> torch.Tensor:
        ids = idx
        if self.training and self.id_dropout > 0:
            ids = torch.where(torch.rand(idx.shape) < self.id_dropout, torch.full_like(idx, self.pad), idx)
        z = self.id_emb(ids) + self.cat_emb(self.item_cat[idx]) + self.price_emb(self.item_bucket[idx])
        if self.text_proj is None:
            return z
        # project the distinct items once: a history batch repeats items many times (30x fewer flops);
        # F.embedding, not [inverse]: its backward is deterministic on CPU (index_put's is not)
        uniq, inverse = torch.unique(idx, return_inverse=True)
        return z + F.embedding(inverse, self.text_proj(self.item_text[uniq]))

    def item_vectors(self, idx: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.item_out(self.item_repr(idx)), dim=-1)

    def new_item_vectors(self, item: torch.Tensor, category: torch.Tensor, bucket: torch.Tensor,
                         text: torch.Tensor) -> torch.Tensor:
        """The item tower from its inputs (``item`` = pad for an item the model never saw)."""
        item = torch.where((item < 0) | (item > self.pad), torch.full_like(item, self.pad), item)
        category = torch.where((category < 0) | (category > self.n_categories),
                               torch.full_like(category, self.n_categories), category)
        bucket = torch.clamp(bucket, 0, self.n_buckets)
        return F.normalize(self.item_out(self.id_emb(item) + self.content(category, bucket, text)), dim=-1)

    def user_vectors(self, history: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``table``: precomputed ``item_repr`` of every item + pad (what the exported graph folds in)."""
        mask = (history != self.pad).to(torch.float32)  # [N, L]
        rep = self.item_repr(history) if table is None else table[history]
        h = rep + self.pos_emb.weight.unsqueeze(0)
        logits = self.attend(torch.tanh(h)).squeeze(-1) + (mask - 1.0) * 1e9
        weights = torch.softmax(logits, dim=1) * mask
        attended = (weights.unsqueeze(-1) * h).sum(dim=1)
        count = mask.sum(dim=1, keepdim=True)
        mean = (h * mask.unsqueeze(-1)).sum(dim=1) / torch.clamp(count, min=1.0)
        z = torch.cat([attended, mean, torch.log1p(count)], dim=1)
        return F.normalize(self.user_mlp(z), dim=-1)

    def repr_table(self) -> torch.Tensor:
        """float32 [n_items + 1, dim]: every item's representation, the pad row last (zero)."""
        with torch.no_grad():
            table = self.item_repr(torch.arange(self.pad + 1))
            table[self.pad] = 0.0
        return table


class UserTower(nn.Module):
    """What the ONNX file holds: history -> user vector, over the folded item representation table."""

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("table", model.repr_table())

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.model.user_vectors(history, self.table)


class ItemTower(nn.Module):
    """What the item-tower ONNX file holds: (item, category, price bucket, text) -> item vector."""

    def __init__(self, model: TwoTower) -> None:
        super().__init__()
        self.model = model

    def forward(self, item: torch.Tensor, category: torch.Tensor, price_bucket: torch.Tensor,
                text: torch.Tensor) -> torch.Tensor:
        return self.model.new_item_vectors(item, category, price_bucket, text)


@dataclass(slots=True)
class TrainedTowers:
    model: TwoTower
    params: TowerParams
    price_edges: np.ndarray
    item_vectors: np.ndarray  # float32 [n_items, dim]
    pairs: int
    final_loss: float

    def user_vectors(self, history: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.user_vectors(torch.as_tensor(history, dtype=torch.long)).numpy()

    def new_item_vectors(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The torch item tower on the ONNX graph's feeds (the parity gate's reference)."""
        with torch.no_grad():
            return self.model.new_item_vectors(*(torch.as_tensor(feeds[n]) for n in ITEM_INPUTS)).numpy()

    def item_tower_feeds(self, item: np.ndarray, category: np.ndarray, price: np.ndarray,
                         text: np.ndarray) -> dict[str, np.ndarray]:
        """ONNX feeds for items given by catalog index (or -1: unknown), category index, price, text vector."""
        bucket = np.searchsorted(self.price_edges, np.log(np.maximum(np.asarray(price, np.float64), 0.01)),
                                 side="right")
        item = np.where(np.asarray(item) < 0, self.model.pad, item)
        text = np.asarray(text, np.float32).reshape(len(item), self.model.text_dim)
        return {"item": item.astype(np.int64), "category": np.asarray(category, np.int64),
                "price_bucket": bucket.astype(np.int64), "text": np.ascontiguousarray(text)}


def training_pairs(train: Baskets, params: TowerParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history [P, L], target item [P], invoice [P]) for every training invoice after the first moment."""
    if len(train) == 0:
        raise ValueError("no training baskets")
    split = temporal_split(train, int(train.ts_ms.min()) + 1)
    q = split.queries
    hist = tower_input(histories(q), params.history_len, train.catalog.n_items)
    rel = q.relevant.tocsr()
    rows = np.repeat(np.arange(len(q)), np.diff(rel.indptr))
    items = rel.indices.astype(np.int64)
    rng = np.random.default_rng(params.seed)
    # cap very large wholesale invoices so they do not dominate the pairs
    keys = rng.random(items.size)
    order = np.lexsort((keys, rows))
    rank = np.arange(order.size) - np.searchsorted(rows[order], rows[order], side="left")
    keep = order[rank < params.max_pairs_per_invoice]
    return hist[rows[keep]], items[keep], q.invoice[rows[keep]]


def train_two_tower(train: Baskets, params: TowerParams = TowerParams(),
                    text: np.ndarray | None = None) -> TrainedTowers:
    """``text``: float32 [n_items, dim] fixed item text vectors (used when ``params.text``)."""
    torch.manual_seed(params.seed)
    catalog = train.catalog
    bucket, edges = price_buckets(catalog.price, params.price_buckets)
    model = TwoTower(catalog.category.astype(np.int64), bucket, params, text if params.text else None)
    hist, target, invoice = training_pairs(train, params)
    freq = np.bincount(target, minlength=catalog.n_items).astype(np.float64) + 1.0
    log_q = torch.as_tensor(np.log(freq / freq.sum()), dtype=torch.float32)
    hist_t, target_t = torch.as_tensor(hist), torch.as_tensor(target)
    invoice_t = torch.as_tensor(invoice)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    gen = torch.Generator().manual_seed(params.seed)
    n = target.size
    loss_value = float("nan")
    model.train()
    for epoch in range(params.epochs):
        perm = torch.randperm(n, generator=gen)
        total, steps = 0.0, 0
        for lo in range(0, n, params.batch):
            idx = perm[lo:lo + params.batch]
            t, inv = target_t[idx], invoice_t[idx]
            u = model.user_vectors(hist_t[idx])
            v = model.item_vectors(t)
            logits = u @ v.T / params.temperature - log_q[t].unsqueeze(0)
            clash = ((inv.unsqueeze(1) == inv.unsqueeze(0)) | (t.unsqueeze(1) == t.unsqueeze(0)))
            clash.fill_diagonal_(False)
            logits = logits.masked_fill(clash, -1e9)
            loss = F.cross_entropy(logits, torch.arange(idx.numel()))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        loss_value = total / max(steps, 1)
        logger.info("two-tower epoch %d: loss %.4f (%d pairs)", epoch + 1, loss_value, n)
    model.eval()
    seen = np.zeros(catalog.n_items + 1, dtype=bool)
    seen[target] = True
    seen[hist.reshape(-1)] = True
    with torch.no_grad():  # untrained ids carry only their random init: the content vector places them
        model.id_emb.weight[torch.as_tensor(~seen)] = 0.0  # (the pad row is zero already)
        vectors = model.item_vectors(torch.arange(catalog.n_items)).numpy().astype(np.float32)
    return TrainedTowers(model, params, edges, vectors, int(n), round(loss_value, 5))


def export_user_tower(towers: TrainedTowers, path: Path) -> Path:
    """``history`` int64 [N, history_len] (pad = n_items) -> ``user_vector`` float32 [N, dim]."""
    import onnx

    module = UserTower(towers.model).eval()
    example = torch.full((2, towers.params.history_len), towers.model.pad, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[HISTORY_INPUT], output_names=[USER_OUTPUT],
                          dynamic_axes={HISTORY_INPUT: {0: "N"}, USER_OUTPUT: {0: "N"}}, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def export_item_tower(towers: TrainedTowers, path: Path) -> Path:
    """``item`` int64 [N] (pad = n_items: unknown), ``category`` int64 [N] (n_categories: unknown),
    ``price_bucket`` int64 [N] (``price_buckets`` edges), ``text`` float32 [N, text_dim] -> ``item_vector``."""
    import onnx

    module = ItemTower(towers.model).eval()
    m = towers.model
    example = (torch.tensor([0, m.pad]), torch.tensor([0, 0]), torch.tensor([0, 1]),
               torch.zeros(2, m.text_dim))
    axes = {n: {0: "N"} for n in ITEM_INPUTS} | {ITEM_OUTPUT: {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=list(ITEM_INPUTS), output_names=[ITEM_OUTPUT],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)))
    return path
