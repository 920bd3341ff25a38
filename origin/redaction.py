"""PII redaction for user-supplied text before it reaches a prompt or a log.

What is found, and how (validated where a checksum exists, so numbers that merely look alike stay):
- emails: a conservative address pattern;
- IBANs: country code + check digits + BBAN, spaces allowed, kept only when the mod-97 checksum holds
  (``stdnum.iban``);
- card numbers: 13-19 digits, spaces or dashes between groups, kept only when Luhn holds (``stdnum.luhn``);
- phone numbers: Google's libphonenumber matcher (``phonenumbers``) at ``VALID`` leniency, international
  numbers in any region and national numbers of the configured regions;
- street addresses: a house number followed by up to four capitalised words and a street-type word
  ("12 Baker Street", "1600 Pennsylvania Avenue NW"), "Flat/Apt/Unit N" prefixes, and UK postcodes.
Each finding is replaced by a typed token (``[EMAIL]`` ...) and counted by kind.

Limits: all-lowercase addresses ("12 baker street") and addresses without a house number and a street-type word ("Rue de Rivoli", "Hauptstrasse 5")
are not recognised; phone numbers outside the configured regions are found only in international form.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", re.IGNORECASE)
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_STREET_TYPES = (
    "street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|court|ct|place|pl|square|sq|terrace|"
    "way|close|crescent|gardens|grove|hill|parkway|pkwy|highway|hwy|row|mews|walk"
)
# The street's name words are capitalised ("3 new road bikes" is not an address); the type word may not be.
ADDRESS = re.compile(
    r"\b(?i:(?:flat|apt|apartment|unit|suite)\s*#?\d+[a-z]?,?\s+)?"
    r"\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][A-Za-z'.-]*\s+){1,4}?(?i:" + _STREET_TYPES + r")\b\.?"
    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?",
)
UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b")


class Redacted(NamedTuple):
    text: str
    found: dict[str, int]       # kind -> how many were replaced

    @property
    def clean(self) -> bool:
        return not self.found


class Redactor:
    """Stateless after construction; one per process."""

    def __init__(self, regions: Sequence[str] = ("GB", "US", "DE", "FR", "NL", "IE")) -> None:
        self.regions = tuple(regions)

    def redact(self, text: str) -> Redacted:
        found: Counter[str] = Counter()

        def sub(pattern: re.Pattern, kind: str, valid=None) -> None:
            nonlocal text

            def repl(m: re.Match) -> str:
                if valid is not None and not valid(m.group(0)):
                    return m.group(0)
                found[kind] += 1
                return f"[{kind.upper()}]"

            text = pattern.sub(repl, text)

        sub(EMAIL, "email")
        sub(IBAN, "iban", std_iban.is_valid)
        sub(CARD, "card", lambda s: luhn.is_valid(re.sub(r"[ -]", "", s)))
        text = self._phones(text, found)
        sub(ADDRESS, "address")
        sub(UK_POSTCODE, "address")
        return Redacted(text, dict(found))

    def _phones(self, text: str, found: Counter) -> str:
        for region in self.regions:
            spans = [(m.start, m.end) for m in
                     phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)]
            for start, end in reversed(spans):
                text = text[:start] + "[PHONE]" + text[end:]
                found["phone"] += 1
        return text
