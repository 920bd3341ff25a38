"""The deep ranker's rows and candidates: (customer history, candidates, context) -> float32 features.

One module for training (model_export), offline evaluation and the origin, so the ranker is always fed
exactly what it was trained on. Numpy only, vectorised over a BATCH of queries: offline evaluation asks
thousands at once, the origin asks one. A batch of histories is CSR-like (``Histories``): query q's
purchases are rows ``ptr[q]:ptr[q+1]``, one row per (invoice, item) pair with its age in days at query
time. Every per-(query, item) aggregate is found by sorting int64 keys ``q * n_items + item``, so the
cost follows the history and candidate sizes, not the catalog size.

The features put repeat and recency first (in retail the next basket repeats much of the past ones),
then the item's popularity, its co-visitation with the history, the two-tower score, price, the
customer's affinity to the item's category and the text affinity: the cosine between the item's text
vector (MiniLM over its title, ``ItemStats.text``) and the mean text vector of the customer's purchases
(each distinct item weighted by its invoices), which places items with few or no purchases.

``ranker-3`` adds what the published next-basket methods rank by, so the ranker can learn their mix
instead of competing with it: TIFU-KNN's personal vector (``shared.models.next_basket``, the paper's
default decays) and its neighbour vector (``shared.models.ranker_neighbours``), UP-CF@r's recent shares
(the last basket, the last five), how many baskets ago the item was bought, its inter-purchase interval
and how due it is, the customer's repeat share and basket size, and how often the item opens a new
customer's first basket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.shared.models.next_basket import basket_ordinals, recent_share_weights, tifu_weights
from strata.shared.models.ranker_neighbours import CustomerVectors, nearest_customers, neighbour_values

FEATURE_SPEC_VERSION = "ranker-4"
FEATURE_NAMES = (
    "log_item_invoices",  # log1p(invoices of the customer containing the item)
    "item_invoice_share",  # those invoices / the customer's invoices
    "bought_before",  # 1 if the customer bought the item before
    "log_days_since_item",  # log1p(days since the customer last bought the item), 0 if never
    "item_recency_decay",  # exp(-days since last bought / 30), 0 if never
    "repeat_rank_inv",  # 1 / (1 + rank among the customer's items by invoices, then recency), 0 if never
    "log_days_since_any",  # log1p(days since the customer's last purchase), 0 without history
    "has_history",
    "log_baskets",  # log1p(the customer's invoices)
    "log_history_items",  # log1p(distinct items the customer bought)
    "log_popularity",  # log1p(invoices with the item, all training)
    "log_recent_popularity",  # log1p(invoices with the item in the last RECENT_DAYS of training)
    "covisitation",  # log1p(sum over history items of their co-visitation weight with the item)
    "tower_score",  # two-tower dot product (user vector . item vector)
    "log_price",
    "category_share",  # share of the customer's purchases in the item's category
    "repeat_rate",  # share of the item's buyers who bought it in two or more invoices
    "text_affinity",  # cosine(item text vector, the history's mean text vector), 0 without history or text
    "tifu_personal",  # TIFU-KNN's personal vector at the item (TIFU_M groups, TIFU_RB / TIFU_RG decays)
    "tifu_neighbours",  # mean of the k nearest training customers' TIFU vectors at the item
    "in_last_basket",  # 1 if the customer's last basket had the item
    "last5_share",  # share of the customer's last 5 baskets with the item (UP-CF@5)
    "baskets_since_item_inv",  # 1 / (1 + baskets since the one that last had the item), 0 if never
    "log_mean_gap_days",  # log1p(mean days between the item's purchases), 0 with fewer than two
    "due_ratio",  # log((days since last bought + 1) / (mean gap + 1)), 0 with fewer than two purchases
    "repeat_share",  # share of the customer's purchases that repeated an item of an earlier basket
    "log_basket_size",  # log1p(the customer's mean distinct items per basket)
    "log_first_basket_popularity",  # log1p(first invoices of customers containing the item)
    "log_recent_first_popularity",  # log1p(those first invoices in the last FIRST_RECENT_DAYS of training)
)
N_FEATURES = len(FEATURE_NAMES)
RECENT_DAYS = 30.0
FIRST_RECENT_DAYS = 14.0  # what new customers buy first right now (the season): the empty-history signal
DECAY_DAYS = 30.0
TIFU_M, TIFU_RB, TIFU_RG = 7, 0.9, 0.7  # the paper's defaults (Hu et al., SIGIR 2020)
DAY_MS = 86_400_000.0
TEXT_BLOCK = 16_384  # (query, item) rows per block of the history text mean: bounds the [rows, dim] temporary


@dataclass(frozen=True, slots=True)
class ItemStats:
    """Per-item tables from the training data, row i = catalog item i (shipped in the ranker bundle)."""

    popularity: np.ndarray  # float32 invoices with the item
    recent_popularity: np.ndarray  # float32 invoices with the item in the last RECENT_DAYS
    price: np.ndarray  # float32
    category: np.ndarray  # int64
    repeat_rate: np.ndarray  # float32 in [0, 1]
    covis_items: np.ndarray  # int64 [n_items, M] co-visited neighbours, -1 = none
    covis_weights: np.ndarray  # float32 [n_items, M]
    text: np.ndarray | None = None  # float32 [n_items, text_dim] unit text vectors; None: text affinity 0
    first_popularity: np.ndarray | None = None  # float32 first invoices of customers with the item; None: 0
    customers: CustomerVectors | None = None  # training customers' TIFU vectors; None: neighbour feature 0
    recent_first_popularity: np.ndarray | None = None  # float32 first invoices in the last FIRST_RECENT_DAYS

    @property
    def n_items(self) -> int:
        return int(self.popularity.size)

    @property
    def n_categories(self) -> int:
        return int(self.category.max(initial=0)) + 1

    def popular(self, n: int) -> np.ndarray:
        """The n most popular items (ties: more recent popularity, then catalog order)."""
        if n <= 0:                  # the origin asks for none: no sort of the whole catalog (~3 ms at 100k)
            return np.zeros(0, np.int64)
        order = np.lexsort((np.arange(self.n_items), -self.recent_popularity, -self.popularity))
        return order[:n].astype(np.int64)

    def fresh(self, n: int) -> np.ndarray:
        """The n items most bought in new customers' first invoices of the last FIRST_RECENT_DAYS (ties:
        recent popularity, then popularity); none without that table."""
        if n <= 0 or self.recent_first_popularity is None:
            return np.zeros(0, np.int64)
        order = np.lexsort((np.arange(self.n_items), -self.popularity, -self.recent_popularity,
                            -self.recent_first_popularity))
        return order[:n].astype(np.int64)


@dataclass(frozen=True, slots=True)
class Histories:
    """A batch of customer histories, CSR-like: query q owns rows ptr[q]:ptr[q+1]."""

    ptr: np.ndarray  # int64 [Q + 1]
    item: np.ndarray  # int64 catalog index per purchase (one row per distinct (invoice, item))
    invoice: np.ndarray  # int64 invoice id per purchase (any id; only equality matters)
    age_days: np.ndarray  # float64 days between the purchase and the query time, >= 0

    @property
    def n_queries(self) -> int:
        return int(self.ptr.size - 1)

    def query_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), np.diff(self.ptr))

    @staticmethod
    def single(item: np.ndarray, invoice: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> Histories:
        """One customer's history at ``now_ms`` (what the origin has for one request)."""
        item = np.asarray(item, dtype=np.int64)
        age = np.maximum(0.0, (now_ms - np.asarray(ts_ms, dtype=np.float64)) / DAY_MS)
        return Histories(np.array([0, item.size], dtype=np.int64), item, np.asarray(invoice, dtype=np.int64), age)


@dataclass(frozen=True, slots=True)
class HistorySummary:
    """Per distinct (query, item) of the histories, sorted by key = q * n_items + item."""

    key: np.ndarray
    invoices: np.ndarray  # float64 invoices with the item
    age_days: np.ndarray  # float64 days since last bought
    rank: np.ndarray  # int64 rank within the query by (invoices desc, age asc)
    baskets: np.ndarray  # float64 [Q] invoices per query
    distinct: np.ndarray  # float64 [Q] distinct items per query
    last_age: np.ndarray  # float64 [Q] days since the last purchase (nan without history)
    category_share: np.ndarray  # float64 [Q, n_categories]
    text_mean: np.ndarray | None = None  # float32 [Q, text_dim] unit mean text vector (0 without history)
    tifu: np.ndarray | None = None  # float64 per key: TIFU personal vector
    last1: np.ndarray | None = None  # float64 per key: share of the last basket (0 / 1)
    last5: np.ndarray | None = None  # float64 per key: share of the last 5 baskets
    baskets_since: np.ndarray | None = None  # float64 per key: baskets after the last one with the item
    mean_gap: np.ndarray | None = None  # float64 per key: mean days between purchases (nan with one)
    repeat_share: np.ndarray | None = None  # float64 [Q]
    basket_size: np.ndarray | None = None  # float64 [Q] mean distinct items per basket
    neighbours: np.ndarray | None = None  # int64 [Q, k] nearest training customers (-1: none)


def summarize(h: Histories, stats: ItemStats) -> HistorySummary:
    n_q, n_items = h.n_queries, stats.n_items
    q = h.query_of_row()
    key = q * n_items + h.item
    order = np.lexsort((h.age_days, key))  # per key, most recent first
    skey, sage = key[order], h.age_days[order]
    opens = np.r_[True, skey[1:] != skey[:-1]] if skey.size else np.zeros(0, bool)
    starts = np.flatnonzero(opens)
    ukey = skey[starts]
    # invoices per (query, item): the pairs are distinct (invoice, item), so a count of rows
    counts = np.diff(np.r_[starts, skey.size]).astype(np.float64)
    last = sage[starts]
    uq = ukey // n_items if ukey.size else ukey
    rank_order = np.lexsort((last, -counts, uq))
    rank = np.empty(ukey.size, dtype=np.int64)
    group_start = np.searchsorted(uq[rank_order], uq[rank_order], side="left")
    rank[rank_order] = np.arange(ukey.size) - group_start
    ordinal, n_baskets = basket_ordinals(q, h.invoice)  # rows are in time order within a query
    baskets = np.zeros(n_q)
    if q.size:
        baskets[q] = n_baskets
    distinct = np.bincount(uq, minlength=n_q).astype(np.float64)
    last_age = np.full(n_q, np.nan)
    if q.size:
        np.fmin.at(last_age, q, h.age_days)
    n_cat = stats.n_categories
    cat = np.zeros((n_q, n_cat))
    np.add.at(cat, (q, stats.category[h.item]), 1.0)
    cat /= np.maximum(cat.sum(axis=1, keepdims=True), 1.0)
    text_mean = history_text(uq, ukey % n_items if ukey.size else ukey, counts, n_q, stats.text)

    def per_key(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values[order], starts) if starts.size else np.zeros(0)

    tifu = per_key(tifu_weights(ordinal, n_baskets, TIFU_M, TIFU_RB, TIFU_RG))
    last1 = per_key(recent_share_weights(ordinal, n_baskets, 1))
    last5 = per_key(recent_share_weights(ordinal, n_baskets, 5))
    latest = np.maximum.reduceat(ordinal[order], starts) if starts.size else np.zeros(0, np.int64)
    first_age = np.maximum.reduceat(sage, starts) if starts.size else np.zeros(0)
    since = (baskets[uq] - 1 - latest).astype(np.float64)
    gap = np.where(counts >= 2, (first_age - last) / np.maximum(counts - 1, 1), np.nan)
    rows = np.bincount(q, minlength=n_q).astype(np.float64)
    repeat_share = (rows - distinct) / np.maximum(rows, 1.0)
    basket_size = rows / np.maximum(baskets, 1.0)
    neighbours = None
    if stats.customers is not None:
        neighbours = nearest_customers(uq, ukey % n_items if ukey.size else ukey, tifu, n_q, stats.customers)
    return HistorySummary(ukey, counts, last, rank, baskets, distinct, last_age, cat, text_mean, tifu, last1,
                          last5, since, gap, repeat_share, basket_size, neighbours)


def history_text(q: np.ndarray, item: np.ndarray, weight: np.ndarray, n_q: int,
                 text: np.ndarray | None) -> np.ndarray | None:
    """float32 [n_q, dim]: per query the L2-normalised ``weight``-weighted sum of its items' text vectors
    (``q`` non-decreasing), zero rows for queries without items; None without text vectors."""
    if text is None:
        return None
    out = np.zeros((n_q, text.shape[1]), dtype=np.float32)
    for lo in range(0, q.size, TEXT_BLOCK):
        bq = q[lo:lo + TEXT_BLOCK]
        starts = np.flatnonzero(np.r_[True, bq[1:] != bq[:-1]])
        part = text[item[lo:lo + TEXT_BLOCK]] * weight[lo:lo + TEXT_BLOCK, None].astype(np.float32)
        out[bq[starts]] += np.add.reduceat(part, starts, axis=0)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-12)


def covisitation(h: Histories, summary: HistorySummary, stats: ItemStats) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys q * n_items + item, score): sum over the history's distinct items of
    log1p(invoices with it) x its co-visitation weight with the item. History items themselves included."""
    n_items = stats.n_items
    hq, hitem = summary.key // n_items, summary.key % n_items
    nbr = stats.covis_items[hitem]  # [H, M]
    w = stats.covis_weights[hitem] * np.log1p(summary.invoices)[:, None]
    ok = nbr >= 0
    keys = (hq[:, None] * n_items + nbr)[ok]
    vals = w[ok].astype(np.float64)
    if keys.size == 0:
        return keys.astype(np.int64), vals
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.add.reduceat(vals, starts)


def _lookup(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in table_keys, found) for each key; table_keys sorted."""
    if table_keys.size == 0:
        return np.zeros(keys.size, dtype=np.int64), np.zeros(keys.size, dtype=bool)
    pos = np.minimum(np.searchsorted(table_keys, keys), table_keys.size - 1)
    return pos, table_keys[pos] == keys


def candidates(h: Histories, summary: HistorySummary, stats: ItemStats, tower_top: np.ndarray | None,
               *, n_past: int = 200, n_covis: int = 100, n_popular: int = 50,
               n_fresh: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr, item) of each query's candidates: its past items (best ``n_past`` by invoices, then recency),
    the two-tower's top-N (``tower_top`` [Q, N], -1 padded, optional), the ``n_covis`` best co-visited items,
    the ``n_popular`` most popular items and the ``n_fresh`` items new customers start with now (``ItemStats.fresh``); distinct per query,
    sorted by item."""
    n_q, n_items = h.n_queries, stats.n_items
    parts = [summary.key[summary.rank < n_past]]
    ckeys, cscore = covisitation(h, summary, stats)
    if ckeys.size:
        cq = ckeys // n_items
        order = np.lexsort((-cscore, cq))
        group_start = np.searchsorted(cq[order], cq[order], side="left")
        keep = order[(np.arange(order.size) - group_start) < n_covis]
        parts.append(ckeys[keep])
    if tower_top is not None and tower_top.size:
        rows = np.repeat(np.arange(n_q, dtype=np.int64), tower_top.shape[1])
        flat = tower_top.reshape(-1).astype(np.int64)
        parts.append((rows * n_items + flat)[flat >= 0])
    pop = np.union1d(stats.popular(n_popular), stats.fresh(n_fresh))
    parts.append((np.arange(n_q, dtype=np.int64)[:, None] * n_items + pop[None, :]).reshape(-1))
    keys = np.unique(np.concatenate(parts))
    ptr = np.searchsorted(keys // n_items, np.arange(n_q + 1), side="left").astype(np.int64)
    return ptr, keys % n_items


def ranker_rows(h: Histories, summary: HistorySummary, stats: ItemStats, cand_ptr: np.ndarray,
                cand_item: np.ndarray, tower_score: np.ndarray) -> np.ndarray:
    """float32 [len(cand_item), N_FEATURES] in FEATURE_NAMES order; ``tower_score`` per candidate."""
    n_items = stats.n_items
    q = np.repeat(np.arange(h.n_queries, dtype=np.int64), np.diff(cand_ptr))
    key = q * n_items + cand_item
    pos, bought = _lookup(key, summary.key)
    invoices = np.where(bought, summary.invoices[pos] if summary.key.size else 0.0, 0.0)
    age = np.where(bought, summary.age_days[pos] if summary.key.size else 0.0, 0.0)
    rank = np.where(bought, summary.rank[pos] if summary.key.size else 0, 0)
    baskets = summary.baskets[q]
    has = baskets > 0
    last_age = np.nan_to_num(summary.last_age[q], nan=0.0)
    ckeys, cscore = covisitation(h, summary, stats)
    cpos, cfound = _lookup(key, ckeys)
    covis = np.where(cfound, cscore[cpos] if ckeys.size else 0.0, 0.0)
    cat = stats.category[cand_item]
    out = np.empty((key.size, N_FEATURES), dtype=np.float32)
    out[:, 0] = np.log1p(invoices)
    out[:, 1] = invoices / np.maximum(baskets, 1.0)
    out[:, 2] = bought
    out[:, 3] = np.where(bought, np.log1p(age), 0.0)
    out[:, 4] = np.where(bought, np.exp(-age / DECAY_DAYS), 0.0)
    out[:, 5] = np.where(bought, 1.0 / (1.0 + rank), 0.0)
    out[:, 6] = np.log1p(last_age)
    out[:, 7] = has
    out[:, 8] = np.log1p(baskets)
    out[:, 9] = np.log1p(summary.distinct[q])
    out[:, 10] = np.log1p(stats.popularity[cand_item])
    out[:, 11] = np.log1p(stats.recent_popularity[cand_item])
    out[:, 12] = np.log1p(covis)
    out[:, 13] = tower_score
    out[:, 14] = np.log(np.maximum(stats.price[cand_item], 0.01))
    out[:, 15] = summary.category_share[q, cat]
    out[:, 16] = stats.repeat_rate[cand_item]
    out[:, 17] = text_affinity(summary, stats, q, cand_item)

    def at_key(values: np.ndarray | None, fill: float = 0.0) -> np.ndarray:
        if values is None or not summary.key.size:
            return np.full(key.size, fill)
        return np.where(bought, values[pos], fill)

    out[:, 18] = at_key(summary.tifu)
    out[:, 19] = (0.0 if stats.customers is None or summary.neighbours is None
                  else neighbour_values(summary.neighbours[:, :], key, n_items, stats.customers))
    out[:, 20] = at_key(summary.last1)
    out[:, 21] = at_key(summary.last5)
    out[:, 22] = np.where(bought, 1.0 / (1.0 + at_key(summary.baskets_since)), 0.0)
    gap = at_key(summary.mean_gap, np.nan)
    several = np.isfinite(gap)
    out[:, 23] = np.where(several, np.log1p(np.nan_to_num(gap)), 0.0)
    out[:, 24] = np.where(several, np.log((age + 1.0) / (np.nan_to_num(gap) + 1.0)), 0.0)
    out[:, 25] = np.zeros(key.size) if summary.repeat_share is None else summary.repeat_share[q]
    out[:, 26] = np.zeros(key.size) if summary.basket_size is None else np.log1p(summary.basket_size[q])
    out[:, 27] = 0.0 if stats.first_popularity is None else np.log1p(stats.first_popularity[cand_item])
    out[:, 28] = (0.0 if stats.recent_first_popularity is None
                  else np.log1p(stats.recent_first_popularity[cand_item]))
    return out


def text_affinity(summary: HistorySummary, stats: ItemStats, q: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Per (query, candidate) row: cosine of the item's text vector and the query's history text mean."""
    out = np.zeros(item.size, dtype=np.float32)
    if stats.text is None or summary.text_mean is None:
        return out
    for lo in range(0, item.size, TEXT_BLOCK):
        sl = slice(lo, lo + TEXT_BLOCK)
        out[sl] = np.einsum("ij,ij->i", stats.text[item[sl]], summary.text_mean[q[sl]])
    return out


def tower_input(h: Histories, history_len: int, pad: int) -> np.ndarray:
    """int64 [Q, history_len]: each query's last ``history_len`` purchases, most recent first, ``pad`` after.

    The two-tower's user/session tower takes this (the purchases are in time order within a query)."""
    lengths = np.diff(h.ptr)
    j = np.arange(history_len, dtype=np.int64)
    idx = h.ptr[1:, None] - 1 - j[None, :]
    valid = j[None, :] < lengths[:, None]
    if h.item.size == 0:
        return np.full((h.n_queries, history_len), pad, dtype=np.int64)
    return np.where(valid, h.item[np.clip(idx, 0, h.item.size - 1)], pad).astype(np.int64)


__all__ = ["FEATURE_NAMES", "FEATURE_SPEC_VERSION", "N_FEATURES", "HistorySummary", "Histories", "ItemStats",
           "candidates", "covisitation", "history_text", "ranker_rows", "summarize", "text_affinity", "tower_input"]
