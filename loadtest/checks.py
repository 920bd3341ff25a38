"""Content checks of the locustfile: a 200 with a wrong body is a failure.

Pure functions (no Locust, no gevent), so they are unit-tested on their own and the locustfile only wires
them to ``catch_response``. Each raises ``BadAnswer`` with a short reason (what Locust shows as the
failure) or returns what the caller needs next (the tier that answered, ``degraded``, the impression).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import orjson

TIERS = frozenset({"edge", "streaming", "origin"})
MSGPACK = "application/msgpack"
JSON = "application/json"


class BadAnswer(Exception):
    """The answer is not what the contract promises; ``tier`` is the tier it claimed, if it said one."""

    def __init__(self, reason: str, tier: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tier = tier


@dataclass(frozen=True, slots=True)
class Answer:
    tier: str
    degraded: bool
    impression_id: str | None
    items: list[str]


def decode(body: bytes, content_type: str | None) -> object:
    ctype = (content_type or "").split(";")[0].strip().lower()
    try:
        if ctype == MSGPACK:
            return msgpack.unpackb(body, raw=False)
        if ctype == JSON:
            return orjson.loads(body)
    except Exception as exc:  # noqa: BLE001 - any decoding error is a bad answer
        raise BadAnswer(f"undecodable {ctype} body: {type(exc).__name__}") from None
    raise BadAnswer(f"unexpected Content-Type {content_type!r}")


def _status(status: int, expected: int, obj: object | None = None) -> None:
    if status != expected:
        code = ""
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            code = f" {obj['error'].get('code')}"
        raise BadAnswer(f"HTTP {status}{code}")


def check_ranked(status: int, body: bytes, content_type: str | None, *, k: int,
                 n_candidates: int | None = None, explain: bool = False) -> Answer:
    """A ``/v1/recommend`` (or, with ``explain``, ``/v1/explain``) answer of any tier.

    Schema: ``items`` (objects with a string ``item_id``, distinct, a finite ``score``; with ``explain`` a
    ``reason`` string each, and the score is optional), ``tier`` in the known set, bool ``degraded``, string ``request_id``, a list
    ``route_reasons``; k items, or min(k, distinct candidates) when the request named its candidates (explain: 1..k, the
    asked items the guardrails let through)."""
    obj = None
    try:
        obj = decode(body, content_type)
    except BadAnswer:
        if status == 200:
            raise
    _status(status, 200, obj)
    if not isinstance(obj, dict):
        raise BadAnswer(f"body is a {type(obj).__name__}, not an object")
    tier = obj.get("tier")
    if tier not in TIERS:
        raise BadAnswer(f"tier {tier!r} not in {sorted(TIERS)}")
    degraded = obj.get("degraded")
    if type(degraded) is not bool:
        raise BadAnswer(f"degraded is {degraded!r}, not a bool", tier)
    if not isinstance(obj.get("request_id"), str) or not obj["request_id"]:
        raise BadAnswer("no request_id", tier)
    if not isinstance(obj.get("route_reasons"), list):
        raise BadAnswer("route_reasons is not a list", tier)
    items = obj.get("items")
    if not isinstance(items, list):
        raise BadAnswer("items is not a list", tier)
    expected = k if n_candidates is None else min(k, n_candidates)
    if explain:             # the asked items the guardrails let through (age gate, stock): 1..k
        if not 1 <= len(items) <= expected:
            raise BadAnswer(f"{len(items)} items, expected 1..{expected}", tier)
    elif len(items) != expected:
        raise BadAnswer(f"{len(items)} items, expected {expected}", tier)
    ids = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("item_id"), str) or not item["item_id"]:
            raise BadAnswer(f"items[{i}] has no item_id", tier)
        score = item.get("score")
        if (not explain or score is not None) and (
                isinstance(score, bool) or not isinstance(score, int | float) or score != score):
            raise BadAnswer(f"items[{i}].score is {score!r}", tier)
        if explain and not (isinstance(item.get("reason"), str) and item["reason"]):
            raise BadAnswer(f"items[{i}] has no reason", tier)
        ids.append(item["item_id"])
    if len(set(ids)) != len(ids):
        raise BadAnswer("duplicate item ids", tier)
    impression = obj.get("impression_id")
    if impression is not None and not isinstance(impression, str):
        raise BadAnswer("impression_id is not a string", tier)
    return Answer(tier, degraded, impression, ids)


def check_events(status: int, body: bytes, content_type: str | None, *, sent: int) -> int:
    """``POST /v1/events``: 202 ``{"accepted": sent, "rejected": []}`` (every generated event is valid)."""
    obj = None
    try:
        obj = decode(body, content_type)
    except BadAnswer:
        if status == 202:
            raise
    _status(status, 202, obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("accepted"), int) or not isinstance(
            obj.get("rejected"), list):
        raise BadAnswer("body is not {accepted, rejected}")
    if obj["rejected"]:
        first = obj["rejected"][0]
        raise BadAnswer(f"{len(obj['rejected'])} rejected, first: {first.get('field')}: {first.get('reason')}"
                        if isinstance(first, dict) else f"{len(obj['rejected'])} rejected")
    if obj["accepted"] != sent:
        raise BadAnswer(f"accepted {obj['accepted']} of {sent}")
    return obj["accepted"]


def request_name(endpoint: str, tier: str, degraded: bool = False) -> str:
    """The name a request is reported under: per tier, degraded answers apart (``strata.loadtest.slo``)."""
    return f"{endpoint} [{tier}, degraded]" if degraded else f"{endpoint} [{tier}]"
