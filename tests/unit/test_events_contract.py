"""The event contract (``shared.contracts.api.parse_event``): valid events per type, and every invalid class with
its status, exact field path and reason."""

from __future__ import annotations

import pytest

from strata.shared.contracts.api import EVENT_TYPES, Event, parse_event, parse_ts
from strata.shared.errors import InvalidField, MalformedBody, StrataError

TS = 1_700_000_000_000
BASE = {"event_id": "e-1", "user_id": "u-1", "session_id": "s-1", "ts": TS, "channel": "web"}
VALID = {
    "view": dict(BASE, type="view", item_id="SKU-1"),
    "click": dict(BASE, type="click", item_id="SKU-1", impression_id="imp-1", slot="pdp"),
    "add_to_cart": dict(BASE, type="add_to_cart", item_id="SKU-1"),
    "remove_from_cart": dict(BASE, type="remove_from_cart", item_id="SKU-1"),
    "purchase": dict(BASE, type="purchase", item_id="SKU-1", quantity=2, price=9.5),
    "search": dict(BASE, type="search", query="red shoes"),
    "impression": dict(BASE, type="impression", impression_id="imp-1", items=["A", "B"], explored=[False, True],
                       alpha=[2.0, 1.5], beta=[48.0, 30], tier="edge", model_version="1.0.0", slot="home"),
    "preference": dict(BASE, type="preference", categories=["shoes"], brands=["Acme"]),
}


def _fails(body: object, exc_type: type[StrataError], status: int, field: str, reason: str) -> None:
    with pytest.raises(exc_type) as ei:
        parse_event(body)
    err = ei.value
    assert (err.status, err.field) == (status, field)
    assert reason in err.reason, err.reason


def test_every_type_has_a_valid_example_that_round_trips() -> None:
    assert sorted(VALID) == sorted(EVENT_TYPES)
    for etype, raw in VALID.items():
        ev = parse_event(raw)
        assert ev.type == etype
        assert parse_event(ev.to_dict()) == ev


def test_a_field_a_type_does_not_use_is_refused_and_one_it_uses_is_not() -> None:
    """Every type-specific field, added to every type's valid example: refused as "is not used" exactly when
    the type does not use it (the validator skips those checks for events that carry none of them)."""
    donors = {f: v for raw in VALID.values() for f, v in raw.items() if f not in BASE and f not in ("type", "slot")}
    for etype, raw in VALID.items():
        for f, v in donors.items():
            body = {**raw, f: v}
            used = f in raw or (etype == "click" and f == "impression_id")
            if etype == "impression" and f in ("explored", "alpha", "beta", "items"):
                continue                                  # lengths tie them together: tested above
            if used:
                parse_event(body)
            else:
                _fails(body, InvalidField, 422, f, f"is not used by {etype!r} events")
        assert [k for k in parse_event(raw).to_dict()] == [k for k in ("event_id", "type", "tenant", "user_id",
                                                                      "session_id", "ts", "channel", *Event.__slots__[7:])
                                                          if k in parse_event(raw).to_dict()]


def test_defaults_and_parsed_values() -> None:
    ev = parse_event(VALID["purchase"])
    assert ev == Event("e-1", "purchase", "default", "u-1", "s-1", TS, "web", item_id="SKU-1", slot="home",
                       quantity=2, price=9.5)
    imp = parse_event(VALID["impression"])
    assert (imp.items, imp.explored, imp.alpha, imp.beta, imp.tier) == (
        ["A", "B"], [False, True], [2.0, 1.5], [48.0, 30.0], "edge")
    assert parse_event(dict(BASE, type="click", item_id="X")).impression_id is None


@pytest.mark.parametrize(("ts", "ms"), [
    (0, 0), (TS, TS), ("2023-11-14T22:13:20Z", TS), ("2023-11-14T23:13:20.000+01:00", TS),
    ("2023-11-14T22:13:20.123456Z", TS + 123),
])
def test_ts_epoch_ms_or_rfc3339(ts: object, ms: int) -> None:
    assert parse_ts(ts) == ms
    assert parse_event(dict(VALID["view"], ts=ts)).ts_ms == ms


def test_consent_flags() -> None:
    ev = parse_event(dict(VALID["view"], consent={"personalization": False, "marketing": True}))
    assert ev.consent == {"personalization": False, "marketing": True}


@pytest.mark.parametrize("body", [[], "click", None, 3])
def test_not_an_object(body: object) -> None:
    _fails(body, MalformedBody, 400, "body", "event must be an object, got")


@pytest.mark.parametrize(("patch", "field", "reason"), [
    ({"type": "like"}, "type", "must be one of ['view', 'click', 'add_to_cart'"),
    ({"type": None}, "type", "got None"),
    ({"channel": "fax"}, "channel", "got 'fax'"),
    ({"channel": None}, "channel", "got None"),
    ({"ts": None}, "ts", "is required"),
    ({"ts": -1}, "ts", "epoch ms must be in 0.."),
    ({"ts": 1.7e12 + 0.5}, "ts", "must be epoch ms (integer) or an RFC 3339 string, got float"),
    ({"ts": True}, "ts", "got bool"),
    ({"ts": "yesterday"}, "ts", "must be epoch ms or an RFC 3339 time, got 'yesterday'"),
    ({"ts": "2023-11-14T22:13:20"}, "ts", "needs a date, 'T', a time and an offset"),
    ({"ts": "2023-11-14"}, "ts", "needs a date, 'T', a time and an offset"),
    ({"event_id": None}, "event_id", "is required"),
    ({"user_id": 5}, "user_id", "must be a string, got int"),
    ({"session_id": ""}, "session_id", "must be 1..128 characters"),
    ({"tenant": "t" * 129}, "tenant", "must be 1..128 characters"),
    ({"item_id": None}, "item_id", "is required"),
    ({"color": "red"}, "body", "unknown field(s) ['color']"),
    ({"ts_ms": TS}, "body", "unknown field(s) ['ts_ms']"),
    ({"quantity": 2}, "quantity", "is not used by 'view' events"),
    ({"query": "x"}, "query", "is not used by 'view' events"),
    ({"impression_id": "i"}, "impression_id", "is not used by 'view' events"),
    ({"consent": {"tracking": True}}, "consent", "unknown flag 'tracking'"),
    ({"consent": {"marketing": 1}}, "consent.marketing", "must be a boolean, got int"),
    ({"consent": []}, "consent", "must be an object of booleans, got list"),
])
def test_invalid_view_event(patch: dict, field: str, reason: str) -> None:
    body = {k: v for k, v in {**VALID["view"], **patch}.items() if v is not None}
    exc = MalformedBody if field == "body" and "must be an object" in reason else InvalidField
    _fails(body, exc, 422, field, reason)


@pytest.mark.parametrize(("etype", "patch", "field", "reason"), [
    ("purchase", {"quantity": None}, "quantity", "must be an integer 1..10000, got None"),
    ("purchase", {"quantity": 0}, "quantity", "got 0"),
    ("purchase", {"quantity": 1.5}, "quantity", "got 1.5"),
    ("purchase", {"price": None}, "price", "must be a number >= 0 (unit price), got None"),
    ("purchase", {"price": -1}, "price", "got -1"),
    ("purchase", {"price": "9"}, "price", "got '9'"),
    ("search", {"query": None}, "query", "must be a string"),
    ("search", {"query": "  "}, "query", "with a non-space character"),
    ("search", {"query": "bread\x1f"}, "query", "no control characters"),
    ("search", {"item_id": "X"}, "item_id", "is not used by 'search' events"),
    ("impression", {"impression_id": None}, "impression_id", "is required"),
    ("impression", {"items": []}, "items", "must have 1..100 entries, got 0"),
    ("impression", {"items": ["A", 3]}, "items[1]", "must be a non-empty string"),
    ("impression", {"explored": [True]}, "explored", "must be a list of 2 booleans"),
    ("impression", {"explored": [True, 0]}, "explored[1]", "must be a boolean, got int"),
    ("impression", {"alpha": None}, "alpha", "is required (the posterior"),
    ("impression", {"beta": [1.0]}, "beta", "must be a list of 2 numbers"),
    ("impression", {"alpha": [1.0, 0]}, "alpha[1]", "must be a positive number, got 0"),
    ("impression", {"tier": "cdn"}, "tier", "must be one of ['edge', 'streaming', 'origin'], got 'cdn'"),
    ("impression", {"model_version": None}, "model_version", "is required"),
    ("click", {"impression_id": 7}, "impression_id", "must be a string, got int"),
    ("preference", {"categories": None, "brands": None}, "categories", "at least one category or brand"),
    ("preference", {"categories": "shoes"}, "categories", "must be a list of strings, got str"),
    ("preference", {"brands": [""]}, "brands[0]", "must be a non-empty string"),
    ("view", {"categories": ["x"]}, "categories", "is not used by 'view' events"),
])
def test_invalid_type_specific_fields(etype: str, patch: dict, field: str, reason: str) -> None:
    body = {k: v for k, v in {**VALID[etype], **patch}.items() if v is not None}
    _fails(body, InvalidField, 422, field, reason)
