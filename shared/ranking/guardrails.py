"""Guardrails every tier applies: banned items and categories, the age gate, and category diversity.

One implementation for the edge, tier 2 and the origin (the blueprint: "guardrails hold at every tier").
Two parts, product-mixer style:
- ``CatalogGuard`` (a filter): compiled once per catalog and policy into one reason code per item and
  age state, so filtering a request is one gather. It returns kept AND removed, with the reason.
- ``DiversitySelector`` (a selector): walks candidates in preference order and keeps at most
  ``max_per_category`` (3) items of one category in the whole answer, and at most ``budget`` explored
  items. With ``diversity_window`` configured (long feeds) the cap applies to every run of that many
  consecutive positions instead. An answer that cannot reach its length under the cap (it asks for more
  than ``max_per_category`` x the categories available) is completed by ``relax``, which raises the cap
  one step at a time; the tiers then say ``diversity_cap_relaxed`` in ``route_reasons`` (never silently).

Items a catalog does not know have no category or age flag: they are checked against
``banned_items`` by id, are never counted by the diversity cap, and pass the age gate unless the
policy says ``unknown_items: block`` (the caller that sent them vouches for them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

try:
    from strata.shared.ranking._walk import walk as _compiled_walk
except ImportError:   # no C compiler at install time: the same walk in Python
    _compiled_walk = None

WALK = "compiled" if _compiled_walk is not None else "python"
REASONS = ("kept", "banned_item", "banned_category", "age_restricted", "unknown_item", "out_of_stock")
DIVERSITY_RELAXED = "diversity_cap_relaxed"     # route_reasons: more than max_per_category of a category
KEPT, BANNED_ITEM, BANNED_CATEGORY, AGE_RESTRICTED, UNKNOWN_ITEM, OUT_OF_STOCK = range(len(REASONS))
UNCAPPED = -1          # category code of items with no known category


class Guardrails(BaseModel):
    """The top-level ``guardrails`` config section (``STRATA_GUARDRAILS__BANNED_CATEGORIES='["wine"]'``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    banned_items: tuple[str, ...] = Field((), description="item ids never served")
    banned_categories: tuple[str, ...] = Field((), description="category names never served")
    max_per_category: int = Field(3, ge=1, description="items of one category allowed in an answer (or per "
                                  "diversity_window, when one is set)")
    diversity_window: int | None = Field(
        None, ge=1, description="null: the cap holds for the whole answer; a number: for every run of that many "
                                "consecutive positions instead (long feeds)")
    unknown_items: Literal["allow", "block"] = Field(
        "allow", description="items the catalog does not know: serve (checked by id only) or drop")


class FilterResult(NamedTuple):
    """Positions into the filtered list: kept (input order) and removed, with a reason code each."""

    kept: np.ndarray
    removed: np.ndarray
    reason_codes: np.ndarray

    def reasons(self) -> list[str]:
        return [REASONS[c] for c in self.reason_codes.tolist()]


class CatalogGuard:
    """The guardrail filter compiled for one catalog (row i = item i) and one policy."""

    name = "guardrails"
    __slots__ = ("policy", "category_codes", "category_names", "unmatched_categories", "removes", "sole_reason",
                 "_codes", "_allowed", "_banned_ids", "_allowed_views", "_category_view")

    def __init__(self, policy: Guardrails, item_ids: Sequence[str], categories: Sequence[str],
                 age_restricted: np.ndarray, in_stock: np.ndarray | None = None,
                 earlier_categories: Mapping[int, Iterable[str]] | None = None) -> None:
        """``in_stock`` (bool per row; None: all): rows out of stock are removed (``out_of_stock``).
        ``earlier_categories`` (row -> categories the item had before a catalog change): a ban on any of them
        still holds (a restriction is a floor: re-filing a wine as beverages does not lift the wine ban)."""
        n = len(item_ids)
        if len(categories) != n or len(age_restricted) != n:
            raise ValueError(f"catalog columns differ in length: {n} ids, {len(categories)} categories, "
                             f"{len(age_restricted)} age flags")
        self.policy = policy
        names, codes = np.unique(np.asarray(categories, dtype=object).astype(str), return_inverse=True)
        self.category_names: tuple[str, ...] = tuple(names.tolist())
        self.category_codes = codes.astype(np.int64)
        banned_cat = np.isin(names, list(policy.banned_categories))
        self.unmatched_categories = tuple(sorted(set(policy.banned_categories) - set(self.category_names)))
        self._banned_ids = frozenset(policy.banned_items)
        base = np.full(n, KEPT, dtype=np.uint8)
        age = np.asarray(age_restricted, dtype=bool)
        verified = base.copy()
        unverified = base.copy()
        unverified[age] = AGE_RESTRICTED
        banned_rows = banned_cat[self.category_codes]
        if earlier_categories and policy.banned_categories:
            banned_set = set(policy.banned_categories)
            banned_rows = banned_rows.copy()
            banned_rows[[r for r, cats in earlier_categories.items() if banned_set.intersection(cats)]] = True
        for arr in (verified, unverified):      # later rules win: the most specific reason is reported
            if in_stock is not None:
                arr[~np.asarray(in_stock, dtype=bool)] = OUT_OF_STOCK
            arr[banned_rows] = BANNED_CATEGORY
            if self._banned_ids:
                arr[np.fromiter((i in self._banned_ids for i in item_ids), dtype=bool, count=n)] = BANNED_ITEM
        self._codes = (unverified, verified)
        self._allowed = (unverified == KEPT, verified == KEPT)
        self._allowed_views = (self._allowed[0].data, self._allowed[1].data)    # memoryviews, for *_at
        self._category_view = self.category_codes.data
        # per age state: does the policy remove any catalog item at all (if not, filtering is a no-op),
        # and is there a single reason for every removal (then removals need no per-item reasons)?
        self.removes = (bool(unverified.any()), bool(verified.any()))
        self.sole_reason = tuple(_sole(arr) for arr in (unverified, verified))

    def allowed(self, age_verified: bool) -> np.ndarray:
        """Kept or not per catalog row, for this age state."""
        return self._allowed[age_verified]

    def allowed_at(self, rows: list[int], age_verified: bool) -> list:
        """``allowed(age_verified)[rows]`` for a short list of known rows (an upper tier's answer), as a list:
        scalar reads through a memoryview, cheaper than NumPy's per-call overhead for ten rows."""
        view = self._allowed_views[age_verified]
        return [view[r] for r in rows]

    def categories_at(self, rows: list[int]) -> list[int]:
        """``categories_of(rows)`` for a short list of known rows, as a list (as ``allowed_at``)."""
        view = self._category_view
        return [view[r] for r in rows]

    def codes(self, age_verified: bool) -> np.ndarray:
        """Reason code per catalog row (0 = kept) for this age state."""
        return self._codes[age_verified]

    def unknown_reason(self, item_id: str) -> int:
        if item_id in self._banned_ids:
            return BANNED_ITEM
        return UNKNOWN_ITEM if self.policy.unknown_items == "block" else KEPT

    def filter(self, rows: np.ndarray, age_verified: bool, ids: Sequence[str] | None = None) -> FilterResult:
        """Filter catalog ``rows`` (-1 = unknown to the catalog; then ``ids`` must name them)."""
        unknown = rows < 0
        if unknown.any():
            if ids is None:
                raise ValueError("rows of unknown items need their ids")
            reason = np.empty(rows.shape[0], dtype=np.uint8)
            known = ~unknown
            reason[known] = self._codes[age_verified][rows[known]]
            reason[unknown] = [self.unknown_reason(ids[i]) for i in np.flatnonzero(unknown).tolist()]
        else:
            reason = self._codes[age_verified][rows]
        return self.result(reason)

    @staticmethod
    def result(reason: np.ndarray) -> FilterResult:
        """FilterResult from one reason code per position (see ``codes``)."""
        keep = reason == KEPT
        removed = np.flatnonzero(~keep)
        return FilterResult(np.flatnonzero(keep), removed, reason[removed])

    def clean(self, rows: np.ndarray, age_verified: bool) -> np.ndarray:
        """Only the allowed catalog rows, in order (for cached pools)."""
        return rows[self._codes[age_verified][rows] == KEPT]

    def categories_of(self, rows: np.ndarray) -> np.ndarray:
        """Category code per row; ``UNCAPPED`` for rows unknown to the catalog."""
        if rows.shape[0] and rows.min() < 0:
            return np.where(rows >= 0, self.category_codes[np.maximum(rows, 0)], UNCAPPED)
        return self.category_codes[rows]


def _sole(codes: np.ndarray) -> int | None:
    present = np.unique(codes[codes != KEPT])
    return int(present[0]) if present.shape[0] == 1 else None


class DiversitySelector:
    """At most ``max_per_category`` of one category in the answer (``window`` None), or in any ``window``
    consecutive positions."""

    name = "diversity"
    __slots__ = ("max_per_category", "window")

    def __init__(self, max_per_category: int, window: int | None = None) -> None:
        if max_per_category < 1 or (window is not None and window < 1):
            raise ValueError("max_per_category and window must be >= 1")
        self.max_per_category = max_per_category
        self.window = window

    def satisfied(self, cats: np.ndarray | Sequence[int]) -> bool:
        """Does this ordered list of category codes keep the cap? (``UNCAPPED`` entries never count).

        One pass over the list (answers are at most 100 long): cheaper than any NumPy formulation here."""
        cap = self.max_per_category
        n = len(cats)
        if n <= cap:
            return True
        seq = cats.tolist() if isinstance(cats, np.ndarray) else cats
        window = self.window
        if (window is None or n <= window) and len(set(seq)) > n - cap:   # no category can have cap + 1 members
            return True
        counts: dict[int, int] = {}
        for i, c in enumerate(seq):
            if window is not None and i >= window:
                old = seq[i - window]
                if old != UNCAPPED:
                    counts[old] -= 1
            if c != UNCAPPED:
                n = counts.get(c, 0) + 1
                if n > cap:
                    return False
                counts[c] = n
        return True

    def select(self, order: np.ndarray | Sequence[int], cats: np.ndarray | Sequence[int], k: int,
               explored: np.ndarray | None = None, budget: int = 0, prior: Sequence[int] = (),
               prior_explored: int = 0) -> tuple[list[int], list[bool]]:
        """Walk ``order`` (positions, best first) and take up to ``k`` under both caps.

        ``cats`` and ``explored`` are indexed by position. ``prior`` holds the category codes of items
        already placed before these (a fill continues the same answer, or the same sliding window);
        explored items are taken while fewer than ``budget`` explored items (``prior_explored`` included)
        are placed. The exploration budget never makes an answer short: when the first walk ends with fewer
        than k, a second walk takes the skipped items that keep the diversity cap (flagged not explored:
        they are placed for diversity, not for exploration). With a sliding window, items skipped for the cap
        are walked again once the window has moved on. Returns (positions, explored flag per position).
        Fewer than k come back only when the diversity cap allows no more (see ``relax``).
        """
        if self.window is None and not prior and not prior_explored and _compiled_walk is not None and (
                isinstance(order, np.ndarray) and isinstance(cats, np.ndarray)):
            return _compiled_walk(order, cats, explored, k, budget, self.max_per_category)
        seq: Sequence[int] = order.tolist() if isinstance(order, np.ndarray) else order
        cat_list = cats.tolist() if isinstance(cats, np.ndarray) else list(cats)
        exp_list = explored.tolist() if explored is not None else None
        if self.window is None:
            return self._select_whole(seq, cat_list, k, exp_list, budget, prior, prior_explored)
        cap, window = self.max_per_category, self.window
        sliding = window is not None
        recent: deque[int] | None = None
        if sliding:
            recent = deque(prior[-(window - 1):] if window > 1 else (), maxlen=max(window - 1, 1))
            counted: Sequence[int] = recent
        else:
            counted = prior
        counts: dict[int, int] = {}
        for c in counted:
            counts[c] = counts.get(c, 0) + 1
        picked: list[int] = []
        flags: list[bool] = []

        def place(pos: int, c: int, e: bool) -> None:
            picked.append(pos)
            flags.append(e)
            if recent is None:
                counts[c] = counts.get(c, 0) + 1
            elif window > 1:
                if len(recent) == window - 1:
                    old = recent[0]
                    if old != UNCAPPED:
                        counts[old] -= 1
                recent.append(c)
                if c != UNCAPPED:
                    counts[c] = counts.get(c, 0) + 1

        used = prior_explored
        skipped_for_budget = False
        walk: Sequence[int] = seq
        while True:
            capped: list[int] = []      # skipped for the cap (a later window may have room for them)
            placed_before = len(picked)
            for pos in walk:
                c = cat_list[pos]
                if c != UNCAPPED and counts.get(c, 0) >= cap:
                    capped.append(pos)
                    continue
                e = exp_list[pos] if exp_list is not None else False
                if e and used >= budget:
                    skipped_for_budget = True
                    continue
                place(pos, c, e)
                used += e
                if len(picked) == k:
                    return picked, flags
            # whole answer: counts only grow, so nothing capped becomes placeable; a sliding window moves on
            if not sliding or not capped or len(picked) == placed_before:
                break
            walk = capped
        if skipped_for_budget:
            taken = set(picked)
            for pos in seq:
                if pos in taken:
                    continue
                c = cat_list[pos]
                if c != UNCAPPED and counts.get(c, 0) >= cap:
                    continue
                place(pos, c, False)
                if len(picked) == k:
                    break
        return picked, flags

    def _select_whole(self, order: Sequence[int], cat_list: list[int], k: int, exp_list: list[bool] | None,
                      budget: int, prior: Sequence[int], prior_explored: int) -> tuple[list[int], list[bool]]:
        """``select`` with the cap on the whole answer: the edge's hot path, one tight loop (no window to move)."""
        cap = self.max_per_category
        counts: dict[int, int] = {}
        for c in prior:
            counts[c] = counts.get(c, 0) + 1
        get = counts.get
        picked: list[int] = []
        flags: list[bool] = []
        used = prior_explored
        skipped_for_budget = False
        for pos in order:
            e = exp_list is not None and exp_list[pos]
            if e and used >= budget:
                skipped_for_budget = True
                continue
            c = cat_list[pos]
            if c != UNCAPPED:
                n = get(c, 0)
                if n >= cap:
                    continue
                counts[c] = n + 1
            picked.append(pos)
            flags.append(e)
            used += e
            if len(picked) == k:
                return picked, flags
        if skipped_for_budget:
            taken = set(picked)
            for pos in order:
                if pos in taken:
                    continue
                c = cat_list[pos]
                if c != UNCAPPED:
                    n = get(c, 0)
                    if n >= cap:
                        continue
                    counts[c] = n + 1
                picked.append(pos)
                flags.append(False)
                if len(picked) == k:
                    break
        return picked, flags

    def relax(self, order: Sequence[int], cats: np.ndarray | Sequence[int], need: int,
              prior: Sequence[int] = ()) -> list[int]:
        """Up to ``need`` more positions from ``order`` (best first; none of them placed yet) for an answer the
        cap cannot complete: the cap is raised one step at a time, so every category gets its next item
        before any gets two more. ``prior``: category codes of the items already in the answer, in order.
        The caller says ``DIVERSITY_RELAXED`` when the answer then breaks the cap (``satisfied`` is False:
        with a sliding window, a longer answer may still keep it)."""
        cat_list = cats.tolist() if isinstance(cats, np.ndarray) else list(cats)
        placed = list(prior)
        remaining = list(order)
        picked: list[int] = []
        cap = self.max_per_category
        while len(picked) < need and remaining:
            cap += 1
            got, _ = DiversitySelector(cap, self.window).select(remaining, cat_list, need - len(picked),
                                                                prior=placed)
            if got:
                picked += got
                placed += [cat_list[p] for p in got]
                taken = set(got)
                remaining = [p for p in remaining if p not in taken]
        return picked
