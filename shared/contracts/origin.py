"""Tier-3 (origin) request and answer schemas: the edge's ``/v1/recommend`` contract plus what only the
origin reads, and the catalog update body of ``POST /v1/items``.

- ``query``: optional free text (a search or a stated need), embedded for retrieval and, redacted, given
  to the reasoner; at most ``MAX_QUERY_CHARS``.
- ``context.consent`` (the shared contract's, every tier): personalization consent (default true). False:
  no personal data is read or used (no profile, no session vector); the answer is ranked on context only.
- ``item_ids`` (``/v1/explain`` only): the items to explain; otherwise the origin's own top k.
Validation is hand-written like ``shared.contracts.api``: every failure names the field and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from strata.shared.contracts.api import (
    MAX_CANDIDATES,
    MAX_ID_LEN,
    RecommendRequest,
    _integral,
    parse_recommend,
)
from strata.shared.contracts.titles import check_title
from strata.shared.errors import InvalidField, MalformedBody

MAX_QUERY_CHARS = 512
MAX_EXPLAIN_ITEMS = 20
MAX_UPSERT = 1000
MAX_TITLE_CHARS = 200
MAX_STOCK = 2**63 - 1            # the catalog's stock column is int64
TIER = "origin"


@dataclass(slots=True)
class OriginRequest:
    req: RecommendRequest          # the edge contract (context.age_verified included)
    query: str | None = None
    consent: bool = True
    item_ids: list[str] | None = None


def parse_origin(obj: object, explain: bool = False) -> OriginRequest:
    """Validate a decoded ``/v1/recommend`` (or, with ``explain``, ``/v1/explain``) body."""
    if type(obj) is not dict:
        raise MalformedBody(f"body must be an object, got {type(obj).__name__}", field="body")
    body = dict(obj)
    query = body.pop("query", None)
    if query is not None:
        if type(query) is not str:
            raise InvalidField(f"must be a string, got {type(query).__name__}", field="query")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidField(f"at most {MAX_QUERY_CHARS} characters, got {len(query)}", field="query")
        query = query.strip() or None
    item_ids = body.pop("item_ids", None) if explain else None
    if item_ids is not None:
        if type(item_ids) is not list or not item_ids:
            raise InvalidField("must be a non-empty list of item ids", field="item_ids")
        if len(item_ids) > MAX_EXPLAIN_ITEMS:
            raise InvalidField(f"at most {MAX_EXPLAIN_ITEMS} items, got {len(item_ids)}", field="item_ids")
        for i, v in enumerate(item_ids):
            if type(v) is not str or not v or len(v) > MAX_ID_LEN:
                raise InvalidField(f"must be a non-empty string id, got {v!r}", field=f"item_ids[{i}]")
        item_ids = list(dict.fromkeys(item_ids))
    req = parse_recommend(body)
    return OriginRequest(req, query, req.context.consent, item_ids)


# Every origin answer has these fields; an explain answer adds REASONER_FIELDS. Items are
# {"item_id", "score", "explored", "sources"} (recommend) or {"item_id", "reason"} (explain).
ANSWER_FIELDS = ("tier", "confidence", "degraded", "route_reasons", "model_version", "removed", "items",
                 "request_id", "impression_id", "timing")
REASONER_FIELDS = ("reasoner", "fallback")


def origin_answer(*, items: list[dict], degraded: bool, route_reasons: list[str], model_version: str,
                  removed: dict[str, int], request_id: str, impression_id: str, server_us: int,
                  reasoner: str | None = None, fallback: str | None = None) -> dict:
    """The answer body. ``confidence`` is null: the origin is the last tier and does not route.
    ``removed`` counts the candidates the filters removed, by reason; ``reasoner`` (explain only) says who
    wrote the reasons and ``fallback`` why the configured reasoner did not (null when it did)."""
    body = {"tier": TIER, "confidence": None, "degraded": degraded, "route_reasons": route_reasons,
            "model_version": model_version, "removed": removed, "items": items}
    if reasoner is not None:
        body["reasoner"] = reasoner
        body["fallback"] = fallback
    body["request_id"] = request_id
    body["impression_id"] = impression_id
    body["timing"] = {"server_us": server_us}
    return body


@dataclass(slots=True)
class ItemUpdate:
    item_id: str
    title: str
    category: str
    price: float
    stock: int
    age_restricted: bool


def parse_items(obj: object, categories: tuple[str, ...]) -> list[ItemUpdate]:
    """``{"items": [{item_id, title, category, price, stock, age_restricted}, ...]}``; categories must be
    ones the catalog knows (the scorer's features have one slot per category)."""
    if type(obj) is not dict:
        raise MalformedBody(f"body must be an object, got {type(obj).__name__}", field="body")
    extra = obj.keys() - {"items"}
    if extra:
        raise InvalidField(f"unknown field(s) {sorted(extra)}", field="body")
    items = obj.get("items")
    if type(items) is not list or not items:
        raise InvalidField("must be a non-empty list of items", field="items")
    if len(items) > MAX_UPSERT:
        raise InvalidField(f"at most {MAX_UPSERT} items per request, got {len(items)}", field="items")
    fields = {"item_id", "title", "category", "price", "stock", "age_restricted"}
    out = []
    for i, it in enumerate(items):
        path = f"items[{i}]"
        if type(it) is not dict:
            raise InvalidField(f"must be an object, got {type(it).__name__}", field=path)
        missing = fields - it.keys()
        if missing:
            raise InvalidField(f"missing field(s) {sorted(missing)}", field=path)
        extra = it.keys() - fields
        if extra:
            raise InvalidField(f"unknown field(s) {sorted(extra)}", field=path)
        item_id, title, category = it["item_id"], it["title"], it["category"]
        if type(item_id) is not str or not item_id or len(item_id) > MAX_ID_LEN:
            raise InvalidField(f"must be a 1..{MAX_ID_LEN} character string", field=f"{path}.item_id")
        if type(title) is not str or not title.strip() or len(title) > MAX_TITLE_CHARS:
            raise InvalidField(f"must be a 1..{MAX_TITLE_CHARS} character string", field=f"{path}.title")
        if category not in categories:
            raise InvalidField(f"must be one of the catalog's categories {list(categories)}, got {category!r}",
                               field=f"{path}.category")
        price = it["price"]
        if type(price) not in (int, float) or not math.isfinite(price) or price < 0:
            raise InvalidField(f"must be a non-negative number, got {price!r}", field=f"{path}.price")
        stock = _integral(it["stock"])
        if type(stock) is not int or not 0 <= stock <= MAX_STOCK:
            raise InvalidField(f"must be an integer 0..{MAX_STOCK}, got {stock!r}", field=f"{path}.stock")
        age = it["age_restricted"]
        if type(age) is not bool:
            raise InvalidField(f"must be a boolean, got {type(age).__name__}", field=f"{path}.age_restricted")
        # checked before the spaces at its ends go: str.strip also takes U+001C-001F and U+0085, which a title
        # may not hold (refused, as the schema does, not stripped)
        out.append(ItemUpdate(item_id, check_title(title, f"{path}.title").strip(), category, round(float(price), 2),
                              stock, age))
    if len({u.item_id for u in out}) != len(out):
        raise InvalidField("item ids must be unique within one request", field="items")
    return out


__all__ = ["ANSWER_FIELDS", "MAX_CANDIDATES", "MAX_EXPLAIN_ITEMS", "MAX_QUERY_CHARS", "REASONER_FIELDS", "TIER",
           "ItemUpdate", "OriginRequest", "origin_answer", "parse_items", "parse_origin"]
