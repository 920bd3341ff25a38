"""shared.ranking.guardrails: the filter (kept and removed, with reasons) and the diversity selector, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from strata.shared.ranking import guardrails as guardrails_module
from strata.shared.ranking.guardrails import (
    AGE_RESTRICTED,
    BANNED_CATEGORY,
    BANNED_ITEM,
    KEPT,
    UNCAPPED,
    UNKNOWN_ITEM,
    CatalogGuard,
    DiversitySelector,
    Guardrails,
)

IDS = ["milk", "merlot", "cigars", "bread", "gin", "apples"]
CATS = ["dairy", "wine", "tobacco", "bakery", "spirits", "fresh produce"]
AGE = np.array([False, True, True, False, True, False])


def guard(**policy) -> CatalogGuard:
    return CatalogGuard(Guardrails(**policy), IDS, CATS, AGE)


def test_age_gate_removes_restricted_items_unless_verified() -> None:
    g = guard()
    rows = np.arange(6)
    res = g.filter(rows, age_verified=False)
    assert res.kept.tolist() == [0, 3, 5]
    assert res.removed.tolist() == [1, 2, 4]
    assert res.reasons() == ["age_restricted"] * 3
    assert g.filter(rows, age_verified=True).kept.tolist() == [0, 1, 2, 3, 4, 5]


def test_banned_items_and_categories_hold_even_when_age_verified() -> None:
    g = guard(banned_items=("bread",), banned_categories=("wine", "dairy"))
    res = g.filter(np.arange(6), age_verified=True)
    assert res.kept.tolist() == [2, 4, 5]
    assert dict(zip(res.removed.tolist(), res.reasons(), strict=True)) == {
        0: "banned_category", 1: "banned_category", 3: "banned_item"}


def test_most_specific_reason_wins() -> None:
    g = guard(banned_items=("merlot",), banned_categories=("wine",))
    codes = g.codes(False)
    assert codes[1] == BANNED_ITEM              # banned by id beats banned category beats age
    assert guard(banned_categories=("wine",)).codes(False)[1] == BANNED_CATEGORY
    assert guard().codes(False)[1] == AGE_RESTRICTED
    assert guard().codes(True)[1] == KEPT


def test_unknown_items_are_checked_by_id_only_and_can_be_blocked() -> None:
    rows = np.array([0, -1, -1, 1])
    ids = ["milk", "NEW-1", "NEW-BANNED", "merlot"]
    res = guard(banned_items=("NEW-BANNED",)).filter(rows, False, ids)
    assert res.kept.tolist() == [0, 1]
    assert res.reasons() == ["banned_item", "age_restricted"]
    blocked = guard(unknown_items="block").filter(rows, True, ids)
    assert blocked.kept.tolist() == [0, 3]
    assert blocked.reason_codes.tolist() == [UNKNOWN_ITEM, UNKNOWN_ITEM]
    with pytest.raises(ValueError, match="need their ids"):
        guard().filter(rows, False)


def test_clean_pool_and_categories() -> None:
    g = guard(banned_categories=("bakery",))
    assert g.clean(np.array([5, 4, 3, 0]), age_verified=False).tolist() == [5, 0]
    assert g.categories_of(np.array([0, -1, 0])).tolist()[1] == UNCAPPED
    assert g.categories_of(np.array([0, 0])).tolist()[0] == g.categories_of(np.array([0])).tolist()[0]


def test_the_list_reads_agree_with_the_array_ones() -> None:
    """``allowed_at`` / ``categories_at`` (the router's recheck of ten known rows) give what ``allowed`` and
    ``categories_of`` give, for either age state."""
    g = guard(banned_categories=("bakery",), banned_items=("apples",))
    rows = [5, 4, 3, 0, 2, 1, 4]
    for age in (False, True):
        assert g.allowed_at(rows, age) == g.allowed(age)[np.array(rows)].tolist()
        assert all(type(x) is bool for x in g.allowed_at(rows, age))
    assert g.categories_at(rows) == g.categories_of(np.array(rows)).tolist()


def test_banned_category_names_that_match_nothing_are_reported() -> None:
    assert guard(banned_categories=("wine", "wyne")).unmatched_categories == ("wyne",)


def test_catalog_columns_must_align() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        CatalogGuard(Guardrails(), IDS, CATS[:-1], AGE)


@pytest.mark.parametrize("bad", [{"max_per_category": 0}, {"diversity_window": 0}, {"unknown_items": "maybe"},
                                 {"banned": ["x"]}])
def test_policy_is_validated(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Guardrails(**bad)


# ---- diversity --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cats", "window", "ok"), [
    ([1, 1, 1], 10, True),
    ([1, 1, 1, 1], 10, False),
    ([1, 2, 1, 3, 1, 4], 10, True),
    ([1, 2, 1, 3, 1, 4, 1], 10, False),                    # four 1s within one window of 10
    ([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 1], 10, True),         # the 4th "1" is 10 positions after the 1st
    ([1, 1, 1, 2, 2, 2, 3, 3, 3, 1], 10, False),
    ([UNCAPPED] * 8 + [1, 1, 1], 10, True),                # unknown items never count
    ([1, 1, 1, 1], 1, True),                               # window of one: any order
])
def test_satisfied(cats: list[int], window: int, ok: bool) -> None:
    assert DiversitySelector(3, window).satisfied(np.array(cats)) is ok
    assert DiversitySelector(3, window).satisfied(cats) is ok


def test_select_skips_a_fourth_item_of_a_category() -> None:
    sel = DiversitySelector(3, 10)
    cats = np.array([7, 7, 7, 7, 2, 7, 3])
    pos, exp = sel.select([0, 1, 2, 3, 4, 5, 6], cats, k=5)
    assert pos == [0, 1, 2, 4, 6] and exp == [False] * 5
    assert sel.satisfied(cats[pos])


def test_select_keeps_the_exploration_budget() -> None:
    sel = DiversitySelector(3, 10)
    cats = np.arange(6)
    explored = np.array([True, True, False, True, False, False])
    pos, exp = sel.select([0, 1, 2, 3, 4, 5], cats, k=4, explored=explored, budget=1)
    assert pos == [0, 2, 4, 5] and exp == [True, False, False, False]


def test_select_continues_a_window_from_prior_items() -> None:
    sel = DiversitySelector(3, 10)
    pos, _ = sel.select([0, 1, 2], np.array([5, 5, 6]), k=3, prior=[5, 5, 1])
    assert pos == [0, 2]                  # a second 5 would make four 5s in the window
    pos, exp = sel.select([0, 1], np.array([1, 2]), k=2, explored=np.array([True, True]), budget=2,
                          prior_explored=1)
    assert pos == [0, 1] and exp == [True, False]   # one explored slot was left; the other is placed to fill


def test_the_exploration_budget_never_makes_an_answer_short() -> None:
    # the greedy items all share one category: after 3 of them only the "explored" ones keep the cap
    sel = DiversitySelector(3, 10)
    cats = np.array([0, 0, 0, 0, 0, 1, 2, 3])
    explored = np.array([False] * 5 + [True] * 3)
    pos, exp = sel.select(list(range(8)), cats, k=5, explored=explored, budget=1)
    assert pos == [0, 1, 2, 5, 6] and exp == [False, False, False, True, False]


def test_sliding_window_lets_long_answers_through() -> None:
    # 24 items over 4 categories: impossible with a whole-answer cap of 3, fine with a window of 10
    sel = DiversitySelector(3, 10)
    cats = np.array([c for _ in range(6) for c in (0, 1, 2, 3)])
    pos, _ = sel.select(list(range(24)), cats, k=24)
    assert len(pos) == 24 and sel.satisfied(cats[pos])
    whole = DiversitySelector(3, 24)
    pos, _ = whole.select(list(range(24)), cats, k=24)
    assert len(pos) == 12 and whole.satisfied(cats[pos])


def test_the_default_rule_caps_the_whole_answer() -> None:
    """No window configured: at most 3 of a category anywhere in the answer (issue: 4-6 of one category in
    answers longer than 10 under the old 10-position window)."""
    assert Guardrails().diversity_window is None
    sel = DiversitySelector(3)
    cats = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 1])       # a 4th 0 and a 4th 1 after 12 positions
    assert sel.satisfied(cats[:12]) and not sel.satisfied(cats)
    assert DiversitySelector(3, 10).satisfied(cats)                      # the old window let them through
    pos, _ = sel.select(list(range(14)), cats, k=14)
    assert pos == list(range(12))
    pos, _ = sel.select([0, 1], np.array([0, 5]), k=2, prior=[0, 0, 2, 2, 2, 0])   # a fill sees the whole answer
    assert pos == [1]


def test_a_sliding_window_walks_skipped_items_again_once_it_moved_on() -> None:
    # preference: 5 of category 0, then one 1; window 4, cap 3: 0 0 0 1 0 0 keeps every window at <= 3
    sel = DiversitySelector(3, 4)
    cats = np.array([0, 0, 0, 0, 0, 1])
    pos, _ = sel.select(list(range(6)), cats, k=6)
    assert pos == [0, 1, 2, 5, 3, 4] and sel.satisfied(cats[pos])


@pytest.mark.parametrize("window", [None, 10])
def test_relax_raises_the_cap_one_step_at_a_time(window: int | None) -> None:
    """k=10 over 2 categories: 6 fit under the cap; the rest come best first, category by category, so no
    category runs ahead of the other by more than the relaxation needs."""
    sel = DiversitySelector(3, window)
    cats = np.array([0] * 8 + [1] * 8)
    pos, _ = sel.select(list(range(16)), cats, k=10)
    assert pos == [0, 1, 2, 8, 9, 10]
    rest = [p for p in range(16) if p not in pos]
    more = sel.relax(rest, cats, 4, prior=cats[pos].tolist())
    assert more == [3, 11, 4, 12]                       # cap 4: one more of each; cap 5: the next of each
    assert not sel.satisfied(cats[pos + more])
    assert sel.relax([], cats, 4) == [] and sel.relax(rest, cats, 0) == []


@pytest.mark.skipif(guardrails_module.WALK != "compiled", reason="the C walk was not built (no compiler)")
def test_the_compiled_walk_gives_the_python_walks_answers() -> None:
    rng = np.random.default_rng(5)
    sel = DiversitySelector(3)
    for trial in range(3000):
        n = int(rng.integers(1, 120))
        k = int(rng.integers(1, 40))
        cats = rng.integers(-1, int(rng.integers(1, 12)), n)              # -1: no category (never capped)
        order = rng.permutation(n)
        explored = rng.random(n) < rng.random() if trial % 4 else None
        budget = int(rng.integers(0, 6))
        compiled = sel.select(order, cats, k, explored, budget)
        python = sel._select_whole(order.tolist(), cats.tolist(), k,
                                   None if explored is None else explored.tolist(), budget, (), 0)
        assert compiled == python, trial
