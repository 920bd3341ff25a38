"""The ranker's collaborative signal: TIFU-KNN's neighbour vector (Hu et al., SIGIR 2020) over the training
customers, numpy only, batched over queries.

The ranker bundle ships every training customer's TIFU vector (``CustomerVectors``, CSR by customer; the
by-item index is derived at load). A query's own TIFU vector (from its history, ``ranker_features.summarize``)
finds its ``k`` nearest customers by Euclidean distance; a candidate's feature is the mean of those
customers' vectors at the candidate item. Nobody is left out: a returning customer's own training row is
usually among its neighbours, both when the ranker learns (label window) and when it serves (the origin
does not know which training row a request's user was), so training and serving see the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEIGHBOURS = 100  # k
GATHER_BLOCK = 2_000_000  # neighbour entries gathered at once: bounds the temporaries of a large batch


@dataclass(frozen=True, slots=True)
class CustomerVectors:
    """Training customers' TIFU vectors, CSR: customer c owns entries ptr[c]:ptr[c+1] (sorted by item)."""

    ptr: np.ndarray  # int64 [U + 1]
    item: np.ndarray  # int64 [nnz]
    weight: np.ndarray  # float32 [nnz]
    by_item_ptr: np.ndarray = field(init=False)  # int64 [n_items + 1] (derived: the same entries by item)
    by_item_customer: np.ndarray = field(init=False)
    by_item_weight: np.ndarray = field(init=False)
    square: np.ndarray = field(init=False)  # float64 [U] squared norms
    n_items: int = 0

    def __post_init__(self) -> None:
        n_customers = self.ptr.size - 1
        customer = np.repeat(np.arange(n_customers, dtype=np.int64), np.diff(self.ptr))
        order = np.argsort(self.item, kind="stable")
        counts = np.bincount(self.item, minlength=self.n_items)
        object.__setattr__(self, "by_item_ptr", np.r_[0, np.cumsum(counts)].astype(np.int64))
        object.__setattr__(self, "by_item_customer", customer[order])
        object.__setattr__(self, "by_item_weight", self.weight[order].astype(np.float64))
        w = self.weight.astype(np.float64)
        object.__setattr__(self, "square", np.bincount(customer, weights=w * w, minlength=n_customers))

    @property
    def n_customers(self) -> int:
        return int(self.ptr.size - 1)

    @staticmethod
    def from_pairs(customer: np.ndarray, item: np.ndarray, weight: np.ndarray, n_items: int) -> CustomerVectors:
        """From (customer, item, weight) entries; duplicates summed, customers renumbered in order of id,
        customers without an entry dropped."""
        ids, customer = np.unique(customer, return_inverse=True)
        key = customer.astype(np.int64) * n_items + item
        ukey, inverse = np.unique(key, return_inverse=True)
        total = np.bincount(inverse, weights=weight, minlength=ukey.size)
        rows = ukey // n_items
        ptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=ids.size))].astype(np.int64)
        return CustomerVectors(ptr, (ukey % n_items).astype(np.int64), total.astype(np.float32), n_items=n_items)


def nearest_customers(q: np.ndarray, item: np.ndarray, weight: np.ndarray, n_q: int, table: CustomerVectors,
                      k: int = NEIGHBOURS) -> np.ndarray:
    """int64 [n_q, min(k, U)]: each query's nearest customers by Euclidean distance between TIFU vectors,
    -1 for a query without entries. ``q`` / ``item`` / ``weight``: the queries' vectors, distinct (q, item)."""
    n_c = table.n_customers
    kk = min(k, n_c)
    if kk <= 0 or n_q == 0:
        return np.full((n_q, max(kk, 0)), -1, dtype=np.int64)
    lo, hi = table.by_item_ptr[item], table.by_item_ptr[item + 1]
    lens = hi - lo
    pos = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    dot = np.bincount(np.repeat(q, lens) * n_c + table.by_item_customer[pos],
                      weights=np.repeat(weight, lens) * table.by_item_weight[pos], minlength=n_q * n_c)
    own = np.bincount(q, weights=weight * weight, minlength=n_q)
    d2 = own[:, None] + table.square[None, :] - 2.0 * dot.reshape(n_q, n_c)
    near = np.argpartition(d2, kk - 1, axis=1)[:, :kk] if kk < n_c else np.tile(np.arange(n_c), (n_q, 1))
    empty = np.bincount(q, minlength=n_q) == 0
    near[empty] = -1
    return near.astype(np.int64)


def neighbour_values(neighbours: np.ndarray, key: np.ndarray, n_items: int, table: CustomerVectors) -> np.ndarray:
    """float64 per ``key`` (q * n_items + item, any order): the mean over query q's neighbours of their
    vectors at the item (0 without neighbours)."""
    out = np.zeros(key.size, dtype=np.float64)
    if key.size == 0 or neighbours.size == 0:
        return out
    order = np.argsort(key, kind="stable")
    skey = key[order]
    n_q, kk = neighbours.shape
    qs = np.repeat(np.arange(n_q, dtype=np.int64), kk)
    cs = neighbours.reshape(-1)
    ok = cs >= 0
    qs, cs = qs[ok], cs[ok]
    lens = table.ptr[cs + 1] - table.ptr[cs]
    acc = np.zeros(key.size, dtype=np.float64)
    for lo in _blocks(lens, GATHER_BLOCK):
        bq, bc, bl = qs[lo], cs[lo], lens[lo]
        pos = np.repeat(table.ptr[bc] - np.cumsum(bl) + bl, bl) + np.arange(int(bl.sum()))
        gathered = np.repeat(bq, bl) * n_items + table.item[pos]
        at = np.minimum(np.searchsorted(skey, gathered), skey.size - 1)
        hit = skey[at] == gathered
        acc += np.bincount(at[hit], weights=table.weight[pos][hit].astype(np.float64), minlength=key.size)
    out[order] = acc / kk
    return out


def _blocks(lens: np.ndarray, budget: int) -> list[slice]:
    """Consecutive slices of ``lens`` whose sums stay near ``budget`` (at least one element each)."""
    if lens.size == 0:
        return []
    cuts = np.searchsorted(np.cumsum(lens), np.arange(budget, int(lens.sum()), budget), side="left")
    edges = np.unique(np.r_[0, cuts + 1, lens.size]).clip(0, lens.size)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
