"""JSON Schemas of the contracts, built from the same constants the hand-written validators use
(``shared.contracts.api``, ``shared.contracts.origin``): one source for the limits, enums and field names. The
validators stay the fast path; ``tests/unit/test_contract_schemas.py`` holds the two in agreement (schema-valid
bodies are accepted, schema-invalid ones refused with the field named).

Schemas are JSON Schema 2020-12, as OpenAPI 3.1 embeds them. What a schema cannot say is in its description: an
ingest batch answers 202 for its valid events and lists the others under ``rejected``; event times outside the
ingest's accepted window around its clock are refused (a window, not a fixed range).
"""

from __future__ import annotations

from strata.shared.contracts import api, origin
from strata.shared.contracts.titles import forbidden_class

# -- building blocks ---------------------------------------------------------------------------------------------
ID = {"type": "string", "minLength": 1, "maxLength": api.MAX_ID_LEN}
# Event ids carry no control characters (they are joined with U+001F in some store values).
EVENT_ID = {**ID, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}
BOOL = {"type": "boolean"}


def title_pattern() -> str:
    """An item title: at least one non-space character (the spaces spelled out, as ECMA-262 and Python differ on
    \\s), none of the characters a title may not hold (titles.py).
    Built on first use (a scan of every code point, ~0.3 s: only the origin's catalog route needs it)."""
    no = forbidden_class()
    return f"^[^{no}]*[^{no}{api.SPACES}][^{no}]*$"


def _obj(props: dict, required: tuple[str, ...] = (), **extra) -> dict:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False,
            **extra}


def _nullable(schema: dict) -> dict:
    """``schema`` or null, as one schema (a type list, or null in the enum): no ``anyOf`` whose branches a fuzzer
    could mutate into each other."""
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


CONTEXT = _obj({
    "channel": {"enum": list(api.CHANNELS), "default": "web"},
    "device": {"enum": list(api.DEVICES), "default": "other"},
    "country": {"type": "string", "maxLength": 8, "default": ""},
    "hour": {"type": "integer", "minimum": 0, "maximum": 23, "default": 12},
    "age_verified": {**BOOL, "default": False,
                     "description": "the caller verified the user's age: age-restricted items may be served"},
    "consent": {**BOOL, "default": True,
                "description": "personalization consent: false -> no personal data is read or used"},
})

_RECOMMEND_PROPS = {
    "tenant": {**ID, "default": "default"},
    "user_id": ID,
    "session_id": ID,
    "slot": {**ID, "default": "home"},
    "k": {"type": "integer", "minimum": 1, "maximum": api.MAX_K, "default": 10},
    "candidates": _nullable({"type": "array", "items": ID, "maxItems": api.MAX_CANDIDATES,
                             "description": "item ids to rank; null or absent: the tier's own candidates"}),
    "context": _nullable(CONTEXT),
    "explain": {**BOOL, "default": False},
}
RECOMMEND_REQUEST = _obj(_RECOMMEND_PROPS, ("user_id", "session_id"), title="RecommendRequest")
_QUERY = _nullable({"type": "string", "maxLength": origin.MAX_QUERY_CHARS,
                    "description": "free text (a search or a stated need); redacted before any reasoner sees it"})
ORIGIN_RECOMMEND_REQUEST = _obj({**_RECOMMEND_PROPS, "query": _QUERY}, ("user_id", "session_id"),
                                title="OriginRecommendRequest")
ORIGIN_EXPLAIN_REQUEST = _obj({
    **_RECOMMEND_PROPS, "query": _QUERY,
    "item_ids": _nullable({"type": "array", "items": ID, "minItems": 1, "maxItems": origin.MAX_EXPLAIN_ITEMS,
                           "description": "the items to explain; otherwise the origin's own top k"}),
}, ("user_id", "session_id"), title="OriginExplainRequest")


def items_request(categories: tuple[str, ...] | None = None) -> dict:
    """``POST /v1/items``; ``categories``: the catalog's category names (the enum of ``category``)."""
    category = {"enum": list(categories)} if categories else {"type": "string"}
    item = _obj({"item_id": ID,
                 "title": {"type": "string", "minLength": 1, "maxLength": origin.MAX_TITLE_CHARS,
                           "pattern": title_pattern(),
                           "description": "product words: not blank, no control or format characters; a URL, web "
                                          "or mail address or words addressing the reader or a model are refused "
                                          "(422 naming what was found)"},
                 "category": category,
                 "price": {"type": "number", "minimum": 0},
                 "stock": {"type": "integer", "minimum": 0, "maximum": origin.MAX_STOCK},
                 "age_restricted": BOOL},
                ("item_id", "title", "category", "price", "stock", "age_restricted"))
    return _obj({"items": {"type": "array", "items": item, "minItems": 1, "maxItems": origin.MAX_UPSERT,
                           "description": "item ids unique within one request"}},
                ("items",), title="ItemsUpsert")


# -- events ------------------------------------------------------------------------------------------------------
_TS = {"type": ["integer", "string"], "minimum": 0, "maximum": api.MAX_TS_MS, "format": "date-time",
       "pattern": "^(?:19[7-9][0-9]|[2-9][0-9]{3})-",
       "description": "UTC epoch milliseconds, or an RFC 3339 time (date-time) with an offset, from 1970 on"}
_EVENT_COMMON = {
    "event_id": EVENT_ID, "tenant": {**EVENT_ID, "default": "default"}, "user_id": EVENT_ID,
    "session_id": EVENT_ID, "ts": _TS, "channel": {"enum": list(api.CHANNELS)},
    "slot": {**EVENT_ID, "default": "home"},
    "consent": _nullable({"type": "object", "additionalProperties": False,
                          "properties": {f: BOOL for f in api.CONSENT_FLAGS}}),
}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e12}
_EVENT_FIELDS: dict[str, dict] = {   # the type-specific fields, as the type that uses them wants them
    "item_id": EVENT_ID,
    "impression_id": EVENT_ID,
    "items": {"type": "array", "items": EVENT_ID, "minItems": 1, "maxItems": api.MAX_K},
    "explored": {"type": "array", "items": BOOL, "maxItems": api.MAX_K},
    "alpha": {"type": "array", "items": _POSITIVE, "maxItems": api.MAX_K},
    "beta": {"type": "array", "items": _POSITIVE, "maxItems": api.MAX_K},
    "prior": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "maxItems": api.MAX_K},
    "tier": {"enum": list(api.TIERS)},
    "model_version": EVENT_ID,
    "quantity": {"type": "integer", "minimum": 1, "maximum": api.MAX_QUANTITY},
    "price": {"type": "number", "minimum": 0, "exclusiveMaximum": api.MAX_PRICE},
    "query": {"type": "string", "minLength": 1, "maxLength": api.MAX_QUERY_LEN, "pattern": api.QUERY_PATTERN},
    "categories": {"type": "array", "items": EVENT_ID, "maxItems": api.MAX_PREFERENCES},
    "brands": {"type": "array", "items": EVENT_ID, "maxItems": api.MAX_PREFERENCES},
}
_REQUIRED_BY_TYPE = {"impression": ("impression_id", "items", "alpha", "beta", "tier", "model_version"),
                     "purchase": ("quantity", "price"), "search": ("query",)}


_NULLABLE = {("click", "impression_id"), ("impression", "prior"), ("preference", "categories"), ("preference", "brands")}


def _event(etype: str) -> dict:
    props = dict(_EVENT_COMMON)
    props["type"] = {"const": etype}
    for name, schema in _EVENT_FIELDS.items():
        if etype not in api.TYPE_FIELDS[name]:
            props[name] = {"type": "null"}          # a field this type does not use may only be null
        elif (etype, name) in _NULLABLE:
            props[name] = _nullable(schema)
        else:
            props[name] = schema
    required = ["event_id", "type", "user_id", "session_id", "ts", "channel"]
    required += (["item_id"] if etype in api.ITEM_EVENTS else []) + list(_REQUIRED_BY_TYPE.get(etype, ()))
    out = _obj(props, tuple(required), title=f"Event[{etype}]")
    if etype == "preference":
        out["description"] = "names at least one category or brand"
        out["anyOf"] = [{"required": ["categories"], "properties": {"categories": {"type": "array", "minItems": 1}}},
                        {"required": ["brands"], "properties": {"brands": {"type": "array", "minItems": 1}}}]
    if etype == "impression":
        out["description"] = ("explored, alpha, beta and prior hold one entry per item (a rule the schema cannot "
                              "state)")
    if etype == "purchase":
        out["description"] = (f"price x quantity is at most {api.MAX_LINE_CENTS // 100:.0e} "
                              "(a rule the schema cannot state)")
    return out


EVENT = {"oneOf": [_event(t) for t in api.EVENT_TYPES], "title": "Event",
         "description": "one click-stream event; its type says which fields it uses (others may only be null)"}


def events_request(max_events: int) -> dict:
    return {"anyOf": [EVENT, _obj({"events": {"type": "array", "items": EVENT, "minItems": 1,
                                                "maxItems": max_events}}, ("events",), title="EventBatch")],
            "title": "EventsRequest",
            "description": "one event or {\"events\": [...]}; a batch answers 202 for its valid events and lists "
                           "the others under `rejected` (422 when none is valid). Event times must also lie in the "
                           "ingest's window around its clock (streaming.ts_horizon_s behind, a small skew ahead)."}


# -- answers -----------------------------------------------------------------------------------------------------
_NONNEG = {"type": "integer", "minimum": 0}
_TIMING = {"type": "object", "required": ["server_us"],
           "properties": {"server_us": _NONNEG, "cache": {"type": "string"}}}
RANKED_ANSWER = {"type": "object", "title": "RecommendAnswer", "required": [
    "items", "tier", "confidence", "route_reasons", "model_version", "degraded", "request_id", "impression_id",
    "timing"], "properties": {
    "items": {"type": "array", "items": {"type": "object", "required": ["item_id", "score", "explored"],
                                         "properties": {"item_id": {"type": "string"}, "score": {"type": "number"},
                                                        "explored": BOOL}}},
    "tier": {"enum": list(api.TIERS)},
    "confidence": _nullable({"type": "number"}),
    "route_reasons": {"type": "array", "items": {"type": "string"}},
    "route_tier": _nullable({"enum": list(api.TIERS)}),
    "model_version": _nullable({"type": "string"}),
    "unknown_candidates": _NONNEG,
    "degraded": BOOL, "request_id": {"type": "string"}, "impression_id": {"type": "string"}, "timing": _TIMING}}


def _origin_answer(item: dict, explain: bool) -> dict:
    props = {"tier": {"const": origin.TIER}, "confidence": {"type": "null"}, "degraded": BOOL,
             "route_reasons": {"type": "array", "items": {"type": "string"}},
             "model_version": {"type": "string"},
             "removed": {"type": "object", "additionalProperties": _NONNEG},
             "items": {"type": "array", "items": item}, "request_id": {"type": "string"},
             "impression_id": {"type": "string"}, "timing": _TIMING}
    fields = list(origin.ANSWER_FIELDS)
    if explain:
        props["reasoner"] = {"type": "string"}
        props["fallback"] = _nullable({"type": "string"})
        fields += list(origin.REASONER_FIELDS)
    return {"type": "object", "required": fields, "properties": props, "additionalProperties": False,
            "title": "ExplainAnswer" if explain else "OriginRecommendAnswer"}


ORIGIN_RECOMMEND_ANSWER = _origin_answer(
    {"type": "object", "required": ["item_id", "score", "explored", "sources"],
     "properties": {"item_id": {"type": "string"}, "score": {"type": "number"}, "explored": BOOL,
                    "sources": {"type": "array", "items": {"type": "string"}}}}, explain=False)
EXPLAIN_ANSWER = _origin_answer(
    {"type": "object", "required": ["item_id", "reason"], "additionalProperties": False,
     "properties": {"item_id": {"type": "string"}, "reason": {"type": "string", "minLength": 1}}}, explain=True)
ITEMS_ANSWER = _obj({"upserted": _NONNEG, "item_ids": {"type": "array", "items": {"type": "string"}},
                     "catalog_items": _NONNEG,
                     "restrictions_kept": {"type": "array", "items": {"type": "string"},
                                           "description": "items whose update tried to clear an age flag or a "
                                                          "category ban: the restriction stays (a floor)"}},
                    ("upserted", "item_ids", "catalog_items", "restrictions_kept"), title="ItemsAnswer")
_REJECTED = {"type": "array", "items": {"type": "object", "required": ["index", "field", "reason"], "properties": {
    "index": _NONNEG, "field": _nullable({"type": "string"}), "reason": {"type": "string"}}}}
EVENTS_ANSWER = _obj({"accepted": {"type": "integer", "minimum": 1}, "rejected": _REJECTED},
                     ("accepted", "rejected"), title="EventsAccepted")
ERROR = {"type": "object", "title": "Error", "required": ["error", "retriable"], "properties": {
    "error": {"type": "object", "required": ["code", "reason", "field"], "properties": {
        "code": {"type": "string"}, "reason": {"type": "string"}, "field": _nullable({"type": "string"})}},
    "retriable": BOOL,
    "request_id": {"type": "string", "description": "5xx only: the id the server log has the error under"},
    "accepted": {"const": 0, "description": "POST /v1/events only, when no event was valid"},
    "rejected": _REJECTED}}
READINESS = {"type": "object", "title": "Readiness", "required": ["ready"], "properties": {"ready": BOOL}}
HEALTH = _obj({"status": {"const": "ok"}}, ("status",), title="Health")
