"""What an item title may say: product words. A title reaches shoppers verbatim (answers, the template
reasoner's sentences) and reaches the LLM's prompt, so ``POST /v1/items`` refuses (422, naming the field)
a title with control or format characters, a URL, web or mail address (also spelled out: "evil dot example"),
or words that address the reader or a model instead of naming a product (instructions, account and payment
prompts). Refused, not stripped: a silently edited title is a different product name.
"""

from __future__ import annotations

import re
import unicodedata

from strata.shared.errors import InvalidField

_URL = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://|\bwww\.|@[a-z0-9-]+\.[a-z]|"
    r"\b[a-z0-9-]+\.(?:com|net|org|io|co|info|biz|app|dev|xyz|top|ru|cn|example|link|click|shop)\b|"
    r"\b(?:dot|\(dot\)|\[dot\])\s+(?:com|net|org|io|co|info|biz|app|dev|xyz|example|link|click|shop)\b)",
    re.IGNORECASE)
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:previous|prior|above|earlier|the)\b|"
    r"\b(?:system|developer)\s+prompt\b|\binstructions?\b|\b(?:assistant|user|system)\s*:|"
    r"\b(?:confirm|verify|update|enter|re-?enter|validate)\s+(?:your|the)\b|"
    r"\byour\s+(?:order|account|card|payment|password|login|details|parcel|package)\b|"
    r"\b(?:click|tap)\s+(?:here|the\s+link|below)\b|\b(?:log\s*in|sign\s*in|call\s+now|act\s+now|urgent)\b|"
    r"\bpassword\b|\bon\s+hold\b",
    re.IGNORECASE)


def check_title(title: str, field: str) -> str:
    """The title when it names a product; ``InvalidField`` naming ``field`` (and what was found) otherwise."""
    for ch in title:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            raise InvalidField(f"must not contain control or format characters (found U+{ord(ch):04X})", field=field)
    folded = unicodedata.normalize("NFKC", title)
    m = _URL.search(folded)
    if m:
        raise InvalidField(f"must not contain a URL or address (found {m.group(0)[:32]!r})", field=field)
    m = _INSTRUCTION.search(folded)
    if m:
        raise InvalidField(f"must name a product, not address the reader (found {m.group(0)[:32]!r})", field=field)
    return title
