"""The catalog topic's records (``shared.catalog_feed``) and what an edge makes of them
(``shared.models.catalog_overlay``, the guard's stock and earlier-category rules, the bandit counts carried over)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from strata.edge.bandit_cache import BanditCounts
from strata.shared.catalog_feed import decode_record, encode_record
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.catalog_overlay import CatalogOverlay
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.online_store.codecs import SlotCounts
from strata.shared.ranking.features import EMBED_DIM, N_CATEGORIES, item_block
from strata.shared.ranking.guardrails import (
    AGE_RESTRICTED,
    BANNED_CATEGORY,
    KEPT,
    OUT_OF_STOCK,
    CatalogGuard,
    Guardrails,
)
from strata.shared.ranking.row_map import ItemIndex

CATS = ["bakery", "wine", "toys"]


def bundle() -> LoadedBundle:
    ids = ["A", "B", "C", "D"]
    cats = ["bakery", "wine", "toys", "bakery"]
    slots = np.array([4, 9, 2, 4])            # one-hot slots need not be in name order
    age = np.array([False, True, False, False])
    feats = item_block(slots, np.array([2.0, 12.0, 5.0, 3.0]), np.array([10.0, 3.0, 7.0, 1.0]), age)
    vecs = np.ones((4, EMBED_DIM), dtype=np.float32)
    return LoadedBundle("1.0.0", Path("."), {}, None, ids, {i: r for r, i in enumerate(ids)}, cats, age,  # type: ignore[arg-type]
                        feats, vecs, {"default": np.arange(4)})


def up(item_id: str, category: str = "bakery", stock: int = 5, age: bool = False, price: float = 2.0) -> ItemUpdate:
    return ItemUpdate(item_id, f"title of {item_id}", category, price, stock, age)


def test_a_record_round_trips_and_a_bad_one_is_refused_with_its_reason() -> None:
    u = up("A", "wine", 0, True, 9.5)
    assert decode_record(encode_record(u, "shopA", "key1")) == u
    for value, reason in [(None, "tombstone"), (b"{oops", "not JSON"), (b'{"v": 2, "item": {}}', "version-1"),
                          (b'{"v": 1, "item": {"item_id": "A"}}', "item fields"),
                          (encode_record(up("A"), None, None).replace(b'"stock":5', b'"stock":"5"'), "wrong type")]:
        with pytest.raises(ValueError, match=reason):
            decode_record(value)


def test_changes_apply_over_the_bundle_and_new_items_get_exported_features() -> None:
    b = bundle()
    ov = CatalogOverlay()
    ov.add([up("A", stock=0), up("C", "wine", price=5.0), up("NEW", "toys", price=4.0, age=True)])
    got = ov.apply(b)
    assert got.item_ids == ["A", "B", "C", "D", "NEW"] and got.index["NEW"] == 4
    assert got.categories == ["bakery", "wine", "wine", "bakery", "toys"]
    assert got.in_stock.tolist() == [False, True, True, True, True]
    assert got.fresh.tolist() == [4] and got.earlier_categories == {2: frozenset({"toys"})}
    # a new item: the exporter's features for its category slot (toys: 2), price and age; zero popularity
    assert np.array_equal(got.item_features[4], item_block(np.array([2]), np.array([4.0]), np.zeros(1),
                                                           np.array([True]))[0])
    assert not got.item_vectors[4].any()
    # a re-filed item: wine's slot, its learned popularity kept
    assert got.item_features[2, :N_CATEGORIES].argmax() == 9
    assert got.item_features[2, N_CATEGORIES + 1] == b.item_features[2, N_CATEGORIES + 1]
    assert got.item_ids is not b.item_ids and b.item_ids == ["A", "B", "C", "D"]     # the base is untouched
    assert CatalogOverlay().apply(b) is b


def test_restrictions_are_a_floor_as_at_the_origin() -> None:
    ov = CatalogOverlay()
    ov.add([up("B", "bakery", age=False)])             # the wine (age-restricted in the bundle) re-filed, flag off
    ov.add([up("C", "toys", age=True), up("C", "toys", age=False)])
    got = ov.apply(bundle())
    assert got.age_restricted.tolist() == [False, True, True, False]
    guard = CatalogGuard(Guardrails(banned_categories=("wine",)), got.item_ids, got.categories, got.age_restricted,
                         got.in_stock, got.earlier_categories)
    assert guard.codes(True).tolist() == [KEPT, BANNED_CATEGORY, KEPT, KEPT]
    assert guard.codes(False)[2] == AGE_RESTRICTED


def test_a_category_the_bundle_does_not_know_is_left_out(caplog) -> None:
    ov = CatalogOverlay()
    ov.add([up("A", "garden"), up("D", stock=0)])
    got = ov.apply(bundle())
    assert got.categories[0] == "bakery" and got.in_stock.tolist() == [True, True, True, False]
    assert "'garden'" in caplog.text


def test_the_guard_removes_out_of_stock_rows_with_their_reason() -> None:
    b = bundle()
    guard = CatalogGuard(Guardrails(), b.item_ids, b.categories, b.age_restricted,
                         np.array([True, True, False, True]))
    res = guard.filter(np.arange(4), age_verified=True)
    assert res.kept.tolist() == [0, 1, 3] and res.reasons() == ["out_of_stock"]
    assert guard.codes(False)[2] == OUT_OF_STOCK


def test_bandit_counts_are_carried_over_to_a_grown_bundle() -> None:
    old = BanditCounts(4, [("t", "home")], recent_max=8)
    sc = SlotCounts(4)
    sc.clicks[:] = [1, 2, 3, 4]
    sc.imps[:] = [10, 20, 30, 40]
    sc.expected[:] = [0.5, 1, 1.5, 2]
    sc.extra = {"NEW": (5.0, 50.0, 2.5), "STILL-UNKNOWN": (1.0, 2.0, 0.25)}
    old.set("t", "home", sc)
    old.get("t", "pdp")                                  # tracked, no counts yet
    new = BanditCounts(5, [("t", "home")], recent_max=8)
    new.carry_over(old, ItemIndex(["A", "B", "C", "D", "NEW"]))
    got = new.get("t", "home")
    assert got.clicks.tolist() == [1, 2, 3, 4, 5] and got.imps.tolist() == [10, 20, 30, 40, 50]
    assert got.expected.tolist() == [0.5, 1, 1.5, 2, 2.5]
    assert got.extra == {"STILL-UNKNOWN": (1.0, 2.0, 0.25)}
    assert new.tracked() == [("t", "home"), ("t", "pdp")] and new.get("t", "pdp").empty
