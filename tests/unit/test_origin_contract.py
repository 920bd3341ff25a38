"""shared.contracts.origin: the origin's additions to the edge contract, and the catalog update body.
Every bad input names its field and the reason."""

from __future__ import annotations

import pytest

from strata.shared.contracts.origin import MAX_QUERY_CHARS, parse_items, parse_origin
from strata.shared.errors import InvalidField, MalformedBody

BASE = {"user_id": "u1", "session_id": "s1"}
CATS = ("bakery", "wine")


def test_edge_contract_plus_query_consent_and_age() -> None:
    o = parse_origin({**BASE, "k": 5, "query": "  gluten free bread ", "context": {"age_verified": True,
                                                                                   "consent": False}})
    assert (o.req.k, o.query, o.consent, o.req.context.age_verified) == (5, "gluten free bread", False, True)
    assert o.item_ids is None
    plain = parse_origin(BASE)
    assert (plain.query, plain.consent) == (None, True)


def test_item_ids_only_on_explain_and_deduplicated() -> None:
    o = parse_origin({**BASE, "item_ids": ["a", "b", "a"]}, explain=True)
    assert o.item_ids == ["a", "b"]
    with pytest.raises(InvalidField) as err:
        parse_origin({**BASE, "item_ids": ["a"]})
    assert err.value.field == "body" and "item_ids" in err.value.reason


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({**BASE, "query": 5}, "query", "must be a string"),
    ({**BASE, "query": "x" * (MAX_QUERY_CHARS + 1)}, "query", f"at most {MAX_QUERY_CHARS} characters"),
    ({**BASE, "context": {"consent": "yes"}}, "context.consent", "must be a boolean"),
    ({**BASE, "context": {"age_verified": 1}}, "context.age_verified", "must be a boolean"),
    ({**BASE, "k": 0}, "k", "between 1 and 100"),
    ({"session_id": "s"}, "user_id", "is required"),
])
def test_bad_recommend_bodies(body: dict, field: str, reason: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_origin(body)
    assert err.value.field == field
    assert reason in err.value.reason


@pytest.mark.parametrize(("item_ids", "field", "reason"), [
    ([], "item_ids", "non-empty list"),
    (["a", 3], "item_ids[1]", "non-empty string id"),
    ([str(i) for i in range(21)], "item_ids", "at most 20"),
])
def test_bad_explain_item_ids(item_ids, field: str, reason: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_origin({**BASE, "item_ids": item_ids}, explain=True)
    assert (err.value.field, reason in err.value.reason) == (field, True)


def test_body_must_be_an_object() -> None:
    with pytest.raises(MalformedBody):
        parse_origin([1, 2])


ITEM = {"item_id": "NEW-1", "title": "Rye bread", "category": "bakery", "price": 2.5, "stock": 3,
        "age_restricted": False}


def test_items_parse() -> None:
    [u] = parse_items({"items": [{**ITEM, "title": " Rye bread\u3000"}]}, CATS)    # spaces at the ends go
    assert (u.item_id, u.title, u.category, u.price, u.stock, u.age_restricted) == (
        "NEW-1", "Rye bread", "bakery", 2.5, 3, False)


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"category": "toys"}, "items[0].category", "must be one of the catalog's categories"),
    ({"price": -1}, "items[0].price", "non-negative number"),
    ({"price": "2"}, "items[0].price", "non-negative number"),
    ({"stock": 1.5}, "items[0].stock", "must be an integer 0.."),
    ({"stock": 2**63}, "items[0].stock", "must be an integer 0.."),
    ({"age_restricted": 0}, "items[0].age_restricted", "must be a boolean"),
    ({"title": " "}, "items[0].title", "character string"),
    # refused, not stripped: Python's str.strip takes U+001C-001F and U+0085 for spaces (a fuzzer found these
    # accepted at the ends of a title, which the schema refuses)
    ({"title": "Rye bread\x1f"}, "items[0].title", "control or format characters (found U+001F)"),
    ({"title": "\x1cRye bread"}, "items[0].title", "control or format characters (found U+001C)"),
    ({"title": "Rye bread\x85"}, "items[0].title", "control or format characters (found U+0085)"),
    ({"item_id": ""}, "items[0].item_id", "character string"),
    ({"colour": "red"}, "items[0]", "unknown field(s) ['colour']"),
])
def test_bad_items(change: dict, field: str, reason: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_items({"items": [{**ITEM, **change}]}, CATS)
    assert err.value.field == field
    assert reason in err.value.reason


def test_items_missing_fields_and_duplicates() -> None:
    with pytest.raises(InvalidField) as err:
        parse_items({"items": [{"item_id": "x"}]}, CATS)
    assert err.value.field == "items[0]" and "missing field(s)" in err.value.reason
    with pytest.raises(InvalidField) as err:
        parse_items({"items": [ITEM, ITEM]}, CATS)
    assert err.value.field == "items" and "unique" in err.value.reason
    with pytest.raises(InvalidField) as err:
        parse_items({"items": []}, CATS)
    assert err.value.field == "items"
