"""Every invalid-input class: the error type (hence HTTP status), the exact field path and the reason."""

from __future__ import annotations

import pytest

from strata.shared.contracts.api import parse_recommend
from strata.shared.errors import InvalidField, MalformedBody, StrataError

OK = {"user_id": "u-1", "session_id": "s-1"}


def _fails(fn, body: object, exc_type: type[StrataError], status: int, field: str, reason: str) -> StrataError:
    with pytest.raises(exc_type) as ei:
        fn(body)
    err = ei.value
    assert err.status == status
    assert err.field == field
    assert reason in err.reason, err.reason
    assert str(err) == f"{field}: {err.reason}"
    assert err.to_dict()["error"]["field"] == field
    return err


@pytest.mark.parametrize(("body", "reason"), [
    ([], "body must be an object, got list"),
    ("x", "body must be an object, got str"),
    (None, "body must be an object, got NoneType"),
    (3, "body must be an object, got int"),
])
def test_body_not_an_object(body: object, reason: str) -> None:
    err = _fails(parse_recommend, body, MalformedBody, 400, "body", reason)
    assert err.to_dict()["error"]["code"] == "malformed_body"


def test_unknown_top_level_field() -> None:
    err = _fails(parse_recommend, dict(OK, limit=5, zz=1), InvalidField, 422, "body", "unknown field(s)")
    assert err.reason == "unknown field(s) ['limit', 'zz']"
    assert err.to_dict()["error"]["code"] == "invalid_field"


@pytest.mark.parametrize(("k", "reason"), [
    ("5", "must be an integer, got str"),
    (5.5, "must be an integer, got float"),
    (True, "must be an integer, got bool"),
    (None, "must be an integer, got NoneType"),
    (0, "must be between 1 and 100, got 0"),
    (-3, "must be between 1 and 100, got -3"),
    (101, "must be between 1 and 100, got 101"),
])
def test_k_invalid(k: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, k=k), InvalidField, 422, "k", reason)


def test_an_integral_number_is_the_integer_it_equals() -> None:
    """JSON Schema's ``integer`` (what the OpenAPI documents say) holds 5.0: the validator agrees."""
    assert parse_recommend(dict(OK, k=5.0)).k == 5
    assert type(parse_recommend(dict(OK, k=5.0)).k) is int


@pytest.mark.parametrize(("cands", "reason"), [
    ("SKU-1", "must be a list of item ids, got str"),
    ({"a": 1}, "must be a list of item ids, got dict"),
    (("a",), "must be a list of item ids, got tuple"),
])
def test_candidates_not_a_list(cands: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, candidates=cands), InvalidField, 422, "candidates", reason)


def test_too_many_candidates() -> None:
    cands = [f"i{i}" for i in range(1001)]
    _fails(parse_recommend, dict(OK, candidates=cands), InvalidField, 422, "candidates",
           "at most 1000 items, got 1001")


@pytest.mark.parametrize(("bad", "reason"), [
    (7, "must be a non-empty string id, got 7"),
    ("", "must be a non-empty string id, got ''"),
    (None, "must be a non-empty string id, got None"),
    ("x" * 129, "must be a non-empty string id"),
    (["a"], "must be a non-empty string id, got ['a']"),
])
def test_candidate_element_invalid_names_its_index(bad: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, candidates=["a", "b", "c", bad, "e"]), InvalidField, 422,
           "candidates[3]", reason)


@pytest.mark.parametrize("name", ["user_id", "session_id"])
def test_required_ident_missing(name: str) -> None:
    body = dict(OK)
    del body[name]
    _fails(parse_recommend, body, InvalidField, 422, name, "is required")
    _fails(parse_recommend, dict(OK, **{name: None}), InvalidField, 422, name, "is required")


@pytest.mark.parametrize("name", ["user_id", "session_id", "slot", "tenant"])
@pytest.mark.parametrize(("value", "reason"), [
    (42, "must be a string, got int"),
    (["u"], "must be a string, got list"),
    ("", "must be 1..128 characters"),
    ("u" * 129, "must be 1..128 characters"),
])
def test_ident_wrong_type_or_length(name: str, value: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, **{name: value}), InvalidField, 422, name, reason)


@pytest.mark.parametrize(("ctx", "reason"), [
    ("web", "must be an object, got str"),
    ([], "must be an object, got list"),
    (5, "must be an object, got int"),
])
def test_context_not_an_object(ctx: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, context=ctx), InvalidField, 422, "context", reason)


def test_context_unknown_field() -> None:
    _fails(parse_recommend, dict(OK, context={"channel": "web", "locale": "de"}), InvalidField, 422, "context",
           "unknown field(s) ['locale']")


@pytest.mark.parametrize(("channel", "reason"), [
    ("tv", "must be one of ['web', 'app', 'email', 'sms', 'pos'], got 'tv'"),
    ("WEB", "got 'WEB'"),
    (1, "got 1"),
    (None, "got None"),
])
def test_context_channel_invalid(channel: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, context={"channel": channel}), InvalidField, 422, "context.channel", reason)


@pytest.mark.parametrize(("device", "reason"), [
    ("phone", "must be one of ['desktop', 'mobile', 'tablet', 'other'], got 'phone'"),
    (0, "got 0"),
])
def test_context_device_invalid(device: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, context={"device": device}), InvalidField, 422, "context.device", reason)


@pytest.mark.parametrize("country", [49, "X" * 9, None])
def test_context_country_invalid(country: object) -> None:
    _fails(parse_recommend, dict(OK, context={"country": country}), InvalidField, 422, "context.country",
           "must be a country code string (<= 8 chars)")


@pytest.mark.parametrize(("hour", "reason"), [
    (24, "must be an integer 0..23, got 24"),
    (-1, "must be an integer 0..23, got -1"),
    ("3", "must be an integer 0..23, got '3'"),
    (3.5, "must be an integer 0..23, got 3.5"),
    (True, "must be an integer 0..23, got True"),
])
def test_context_hour_invalid(hour: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, context={"hour": hour}), InvalidField, 422, "context.hour", reason)


@pytest.mark.parametrize(("explain", "reason"), [
    ("yes", "must be a boolean, got str"),
    (1, "must be a boolean, got int"),
    (None, "must be a boolean, got NoneType"),
])
def test_explain_not_a_boolean(explain: object, reason: str) -> None:
    _fails(parse_recommend, dict(OK, explain=explain), InvalidField, 422, "explain", reason)
