"""Checks on an LLM's answer before anyone sees it. The check is an allow-list: a reason passes only when every
word of it is supported by the item's catalog facts (its title, category and price), the user's own consented
history (recently browsed catalog categories), what the ranking knows about how the item was found (its candidate
sources: "popular", "close to your session" ...), or a small fixed vocabulary of sentence glue ("it", "your",
"matches", "search" ...). Words of the user's query support nothing: a query cannot talk the reasoner into naming
another product or a claim. A failed check names its reason (counted; the template reasoner answers instead):

- ``too_long``: the answer is over ``MAX_ANSWER_CHARS`` or a reason over ``MAX_REASON_CHARS``;
- ``invalid_json``: not JSON, or not exactly ``{"items": [{"item_id": str, "reason": str}, ...]}``;
- ``bad_ids``: an id twice, an id that is not a candidate, or a candidate left out;
- ``price_mismatch``: a number that is neither the item's price nor a number of its title;
- ``category_mismatch``: a catalog category named that is neither the item's nor one the user browsed;
- ``title_mismatch``: a catalog title word (a product noun, a brand ...) not in this item's title or category;
- ``unsupported_claim``: any other word no fact supports ("clinically", "free", "guaranteed", a URL, an
  instruction).
"""

from __future__ import annotations

import json
import re

from strata.origin.catalog import words
from strata.origin.reasoner.base import ExplainInput

MAX_REASON_CHARS = 200          # the answer schema's maxLength, enforced here too
MAX_ANSWER_CHARS = 8_192        # the whole completion: 20 items x 200 characters plus JSON


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")
# Sentence glue: no fact can hide in these words.
FRAME = _set("""
a an and are as at be been because being by for from has have here in is it it's its of on or so that the their
them these they this those to too was with which who you your yours also just only both each one ones all than
then when where what while how very more same kind
item items product products pick picked choice option suggestion suggested recommend recommended we our us
match matches matching matched search searched searching searches category categories price priced costs cost
like likes liked similar fits fit goes go
""")
# Words about the user's past: supported only by a consented history.
HISTORY_WORDS = _set("looked look looking browse browsed browsing viewed view views recently recent earlier "
                          "before session")
# What a candidate source found out about an item; these words are supported only for items it found.
SOURCE_WORDS = {
    "popular_source": _set("popular popularity right now trending many shoppers"),
    "covisitation_source": _set("shoppers often view viewed together bought with ones looked others other "
                                     "people customers who"),
    "ann_source": _set("close closest what looked session near"),
    "two_tower_source": _set("close closest what looked session near history"),
    "content_source": _set("close closest meaning meant near"),
}


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _numbers(text: str) -> set[float]:
    return {float(m.replace(",", ".")) for m in _NUMBER.findall(text)}


def parse_answer(raw: object) -> list[tuple[str, str]]:
    """``(item_id, reason)`` pairs of a completion, or ``Rejected`` (``too_long``/``invalid_json``)."""
    if not isinstance(raw, str):
        raise Rejected("invalid_json", f"the completion is a {type(raw).__name__}, not text")
    if len(raw) > MAX_ANSWER_CHARS:
        raise Rejected("too_long", f"the completion has {len(raw)} characters (at most {MAX_ANSWER_CHARS})")
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise Rejected("invalid_json", f"not JSON: {exc}") from None
    if type(obj) is not dict or set(obj) != {"items"} or type(obj["items"]) is not list:
        raise Rejected("invalid_json", "expected exactly {'items': [{'item_id', 'reason'}, ...]}")
    pairs = []
    for it in obj["items"]:
        if type(it) is not dict or set(it) != {"item_id", "reason"} or type(it["item_id"]) is not str \
                or type(it["reason"]) is not str:
            raise Rejected("invalid_json", "every item must be exactly {'item_id': string, 'reason': string}")
        reason = it["reason"].strip()
        if not reason:
            raise Rejected("invalid_json", f"{it['item_id']}: empty reason")
        if len(reason) > MAX_REASON_CHARS:
            raise Rejected("too_long", f"{it['item_id']}: a reason of {len(reason)} characters "
                                       f"(at most {MAX_REASON_CHARS})")
        pairs.append((it["item_id"], reason))
    return pairs


def history(inp: ExplainInput) -> set[str]:
    """The user's consented history a reason may cite: recently browsed categories that are catalog categories."""
    return {c.lower() for c in inp.recent_categories if c in inp.categories}


def check_answer(raw: object, inp: ExplainInput) -> list[dict]:
    """The answer's items in the input's order, or ``Rejected``."""
    pairs = parse_answer(raw)
    facts = {f["item_id"]: f for f in inp.items}
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids):
        raise Rejected("bad_ids", f"duplicate ids in {ids[:25]}")
    if set(ids) != set(facts):
        raise Rejected("bad_ids", f"ids {sorted(set(ids) ^ set(facts))[:25]} differ from the candidates")
    recent = history(inp)
    recent_words = {w for c in recent for w in words(c)}
    sources = {f["item_id"]: (inp.sources[i] if i < len(inp.sources) else []) for i, f in enumerate(inp.items)}
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
        item_words = set(words(f["title"])) | set(words(f["category"]))
        said = set(words(reason))
        foreign = sorted(w for w in said if w in inp.vocabulary and w not in item_words | recent_words | FRAME)
        if foreign:
            raise Rejected("title_mismatch", f"{item_id}: words {foreign[:10]} are not in its title {f['title']!r}")
        allowed = item_words | recent_words | FRAME | {inp.channel} | (HISTORY_WORDS if recent else frozenset())
        for s in sources[item_id]:
            allowed |= SOURCE_WORDS.get(s, frozenset())
        unsupported = sorted(w for w in said if w not in allowed and not w.isdigit())
        if unsupported:
            raise Rejected("unsupported_claim", f"{item_id}: words {unsupported[:10]} are supported by no fact of it")
    by_id = dict(pairs)
    return [{"item_id": f["item_id"], "reason": by_id[f["item_id"]]} for f in inp.items]
