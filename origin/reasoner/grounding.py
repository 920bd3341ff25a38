"""Checks on an LLM's answer before anyone sees it; a failed check names its reason (counted, then the
template reasoner answers instead).

- ``invalid_json``: not JSON, or not ``{"items": [{"item_id", "reason"}]}``;
- ``bad_ids``: an id twice, an id that is not a candidate, or a candidate left out;
- ``price_mismatch``: a number in a reason that is neither the item's price nor a number of its title;
- ``category_mismatch``: a catalog category named that is neither the item's nor one the user browsed;
- ``title_mismatch``: a catalog title word (a product noun, a brand ...) that is not in this item's title
  or category, the user's search, or the user's recent categories.
"""

from __future__ import annotations

import json
import re

from strata.origin.catalog import words
from strata.origin.reasoner.base import ExplainInput

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")
# Words a sentence needs that may also occur in titles; never a reason to reject.
_COMMON = frozenset(["a", "an", "and", "are", "as", "at", "be", "because", "by", "for", "from", "good", "great", "has", "have", "in", "is", "it", "its", "like", "matches", "of", "on", "or", "our", "pick", "picks", "popular", "price", "priced", "recently", "right", "now", "search", "similar", "so", "that", "the", "this", "to", "value", "with", "you", "your", "browsed", "looked", "session", "item", "items", "choice", "great", "nice", "new"])


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _numbers(text: str) -> set[float]:
    return {float(m.replace(",", ".")) for m in _NUMBER.findall(text)}


def check_answer(raw: str, inp: ExplainInput) -> list[dict]:
    """The answer's items in the input's order, or ``Rejected``."""
    try:
        obj = json.loads(raw)
        items = obj["items"]
        pairs = [(str(it["item_id"]), str(it["reason"]).strip()) for it in items]
    except (ValueError, TypeError, KeyError) as exc:
        raise Rejected("invalid_json", f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != {"items"} or any(not r for _, r in pairs):
        raise Rejected("invalid_json", "expected exactly {'items': [{'item_id', 'reason'}]} with non-empty reasons")
    facts = {f["item_id"]: f for f in inp.items}
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids):
        raise Rejected("bad_ids", f"duplicate ids in {ids}")
    if set(ids) != set(facts):
        raise Rejected("bad_ids", f"ids {sorted(set(ids) ^ set(facts))} differ from the candidates")
    query_words = set(words(inp.query)) if inp.query else set()
    recent = {c.lower() for c in inp.recent_categories}
    recent_words = {w for c in recent for w in words(c)}
    for item_id, reason in pairs:
        f = facts[item_id]
        text = reason.lower()
        allowed_numbers = {round(float(f["price"]), 2)} | _numbers(f["title"])
        for n in _numbers(reason):
            if round(n, 2) not in allowed_numbers:
                raise Rejected("price_mismatch", f"{item_id}: states {n}, catalog price {f['price']:.2f}")
        own = f["category"].lower()
        for c in inp.categories:
            cl = c.lower()
            if cl != own and cl not in recent and re.search(rf"\b{re.escape(cl)}\b", text):
                if cl in own or cl in f["title"].lower():
                    continue         # "wine" inside "wine glasses" of a kitchen item is the title speaking
                raise Rejected("category_mismatch", f"{item_id}: names category {c!r}, catalog says {f['category']!r}")
        allowed = set(words(f["title"])) | set(words(f["category"])) | query_words | recent_words | _COMMON
        foreign = sorted(w for w in set(words(reason)) if w in inp.vocabulary and w not in allowed)
        if foreign:
            raise Rejected("title_mismatch", f"{item_id}: words {foreign} are not in its title {f['title']!r}")
    by_id = dict(pairs)
    return [{"item_id": f["item_id"], "reason": by_id[f["item_id"]]} for f in inp.items]
