"""The contracts' JSON Schemas (``shared.contracts.schemas``) agree with the hand-written validators (property
tests: hypothesis, with bodies generated from the schemas by schemathesis' generator):
- every body the schema accepts, the validator accepts;
- every body schemathesis generates to break the schema (its negative mode), and every body made schema-invalid
  by one change (a field set to another JSON value, a required field removed, an unknown field added), the
  validator refuses with a 4xx naming the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.openapi import from_dict

from strata.shared.contracts import schemas
from strata.shared.contracts.api import MAX_LINE_CENTS, parse_event, parse_recommend
from strata.shared.contracts.origin import parse_items, parse_origin
from strata.shared.contracts.titles import _INSTRUCTION, _URL
from strata.shared.errors import StrataError
from strata.shared.serving.openapi import Route, document
from tests.support import hypothesis_regex

hypothesis_regex.install()      # each regex character class built once (the schemas' are huge)

CATEGORIES = ("bakery", "dairy", "wine")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time")(_date_time)
CASES = {   # name -> (schema, validator)
    "recommend": (schemas.RECOMMEND_REQUEST, parse_recommend),
    "origin_recommend": (schemas.ORIGIN_RECOMMEND_REQUEST, parse_origin),
    "explain": (schemas.ORIGIN_EXPLAIN_REQUEST, lambda b: parse_origin(b, explain=True)),
    "items": (schemas.items_request(CATEGORIES), lambda b: parse_items(b, CATEGORIES)),
    "event": (schemas.EVENT, parse_event),
}
pytestmark = pytest.mark.slow
SLOW = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=6)


def _strategy(schema: dict, mode: GenerationMode = GenerationMode.POSITIVE):
    """Request bodies for ``schema`` from schemathesis' generator (what the fuzzer sends the tiers)."""
    doc = document("contracts", "", [Route("/x", "x", schema, {})])
    return from_dict(doc)["/x"]["POST"].as_strategy(generation_mode=mode).map(lambda case: case.body)


def _ecma_pattern(validator, pattern: str, instance: object, schema: dict):
    """``pattern`` as JSON Schema means it (ECMA-262): ``$`` is the end of the string; Python's ``$`` also matches
    before a final newline, which would call ``"id\\n"`` valid."""
    if isinstance(instance, str) and not re.search(re.sub(r"(?<!\\)\$$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


ECMA = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


def _valid(schema: dict, body: object) -> bool:
    return ECMA(schema, format_checker=FORMATS).is_valid(body)


def _lengths(name: str, body: object) -> object:
    """Rules the schema states only in words, followed by the generated events: an impression's explored/alpha/
    beta/prior hold one entry per item (trimmed, or padded with valid entries); a purchase's price x quantity is
    bounded."""
    if name != "event" or not isinstance(body, dict):
        return body
    if body.get("type") == "impression" and isinstance(body.get("items"), list):
        n = len(body["items"])
        for key, pad in (("explored", False), ("alpha", 1.0), ("beta", 1.0), ("prior", 0.5)):
            v = body.get(key)
            if isinstance(v, list):
                body[key] = (v + [pad] * n)[:n]
    if body.get("type") == "purchase" and isinstance(body.get("price"), int | float) \
            and isinstance(body.get("quantity"), int | float) and body["price"] * body["quantity"] * 100 > MAX_LINE_CENTS:
        body["price"] = 1.0
    return body


def _unique_items(name: str, body: object) -> bool:
    """``POST /v1/items`` also wants unique ids and titles free of URLs and instructions (said in the schema's
    descriptions, not checkable by it; its pattern does state the character rule)."""
    if name != "items":
        return True
    ids = [it["item_id"] for it in body["items"]]
    return len(set(ids)) == len(ids) and not any(_URL.search(it["title"]) or _INSTRUCTION.search(it["title"])
                                                 for it in body["items"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_schema_valid_bodies_are_accepted(name) -> None:
    schema, validate = CASES[name]

    @SLOW
    @given(_strategy(schema))
    def check(body) -> None:
        body = _lengths(name, body)
        if _unique_items(name, body):
            validate(body)

    check()


@pytest.mark.parametrize("name", sorted(CASES))
def test_schemathesis_negative_bodies_are_refused_with_the_field_named(name) -> None:
    schema, validate = CASES[name]

    @SLOW
    @given(_strategy(schema, GenerationMode.NEGATIVE))
    def check(body) -> None:
        if _valid(schema, body):
            return                      # the generator's mutation happened to keep it valid
        with pytest.raises(StrataError) as err:
            validate(body)
        assert err.value.status in (400, 413, 422), err.value
        assert err.value.field, err.value

    check()


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_change_that_breaks_the_schema_is_refused_with_the_field_named(name) -> None:
    schema, validate = CASES[name]

    @SLOW
    @given(_strategy(schema), st.data())
    def check(body, data) -> None:
        body = _lengths(name, body)
        target = body["items"][0] if name == "items" else body
        key = data.draw(st.sampled_from(sorted(set(target) | {"unknown_field"})), label="key")
        how = data.draw(st.sampled_from(["set", "drop"]), label="how")
        if how == "drop":
            target.pop(key, None)
        else:
            target[key] = data.draw(JSON, label="value")
        if _valid(schema, body):
            if _unique_items(name, body):
                validate(_lengths(name, body))     # still valid: still accepted
            return
        with pytest.raises(StrataError) as err:
            validate(body)
        assert err.value.status in (400, 413, 422), err.value
        assert err.value.field, err.value

    check()


def test_event_times_in_both_forms_agree() -> None:
    base = {"event_id": "e", "type": "view", "user_id": "u", "session_id": "s", "channel": "web", "item_id": "i"}
    now = datetime.now(UTC)
    for ts in (0, 1_700_000_000_000, now.isoformat(), (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "2024-01-05T10:30:00+01:00", "2024-01-05", "2024-01-05 10:30:00", "yesterday", -1, 1.5, True):
        body = {**base, "ts": ts}
        ok = _valid(schemas.EVENT, body)
        try:
            parse_event(body)
            accepted = True
        except StrataError:
            accepted = False
        assert ok == accepted, (ts, ok, accepted)


# Characters on which ECMA-262 regexes (what JSON Schema patterns are) and Python (``str.strip``, ``re``) disagree
# about "space", and a few plain cases. A fuzzer once sent ``query: "\x1f"``: ECMA's \S matches it, Python strips it.
QUERIES = ("\x1f", "\x1c", "\x85", "\ufeff", "\u3000", "\u00a0", " ", "a\tb", "a\n", " a ", "é", "x\u3000y")


@pytest.mark.parametrize("query", QUERIES, ids=[f"U+{ord(q[0]):04X}-{len(q)}" for q in QUERIES])
def test_a_search_query_is_accepted_by_the_schema_exactly_when_by_the_parser(query) -> None:
    body = {"event_id": "e", "type": "search", "user_id": "u", "session_id": "s", "channel": "web", "ts": 0,
            "query": query}
    try:
        parse_event(body)
        accepted = True
    except StrataError as err:
        assert err.field == "query", err
        accepted = False
    assert _valid(schemas.EVENT, body) == accepted, (query, accepted)
    assert accepted == (query.strip(" \u00a0\u3000\ufeff") != "" and not re.search("[\x00-\x1f\x7f-\x9f]", query))


def _patterns(node: object):
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for v in node.values():
            yield from _patterns(v)
    elif isinstance(node, list):
        for v in node:
            yield from _patterns(v)


def test_schema_patterns_spell_out_their_character_classes() -> None:
    """\\s, \\w, \\d and \\b mean different things in ECMA-262 (the schema's readers: fuzzers, client validators)
    and in Python (the parsers): a pattern spells its classes out."""
    found = [p for schema, _ in CASES.values() for p in _patterns(schema)]
    assert any("\\u3000" in p for p in found) and len(found) >= 3, found
    for p in found:
        assert not re.search(r"(?<!\\)(?:\\\\)*\\[sSwWdDbB]", p), p
