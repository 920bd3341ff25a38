"""PII redaction for user text before it reaches a prompt: Microsoft Presidio's analyzer with pattern recognizers
only (``NoOpNlpEngine``: no spaCy model is loaded or needed), the stock ones that hold up on shop queries plus the
ones in ``origin.pii.recognizers``.

The text is NFKC-normalised first (full-width digits and letters become ASCII; invisible format characters such as
zero-width spaces are dropped), so "４１１１..." and "4111\\u200b1111..." are found like "4111 1111...". Each finding
becomes a typed token (``[CARD]``, ``[EMAIL]`` ...); overlapping findings merge into one token, the most confident
finding naming it. What each kind finds, and how well (recall and precision per kind on a labelled set), is printed
by ``python -m strata.origin.pii.measure``.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

logger = logging.getLogger(__name__)
# Presidio logs every recognizer it loads at INFO (30 lines at each start): its own chatter stays at WARNING and up
logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)

# Presidio's entity names -> the token kinds of the redacted text
KIND = {"CREDIT_CARD": "card", "CARD": "card", "EMAIL_ADDRESS": "email", "EMAIL": "email", "PHONE_NUMBER": "phone",
        "IBAN_CODE": "iban", "IP_ADDRESS": "ip", "US_SSN": "ssn", "SSN": "ssn", "UK_NINO": "national_id",
        "NATIONAL_ID": "national_id", "IN_AADHAAR": "national_id", "ES_NIF": "national_id", "ES_NIE": "national_id",
        "IT_FISCAL_CODE": "national_id", "SG_NRIC_FIN": "national_id", "PASSPORT": "passport",
        "UK_PASSPORT": "passport", "CVV": "cvv", "EXPIRY": "expiry", "DOB": "dob", "ADDRESS": "address",
        "PERSON": "person"}
KINDS = ("email", "phone", "card", "cvv", "expiry", "iban", "ssn", "national_id", "passport", "dob", "ip",
         "address", "person")
MIN_SCORE = 0.4


class Redacted(NamedTuple):
    text: str
    found: dict[str, int]       # kind -> how many were replaced

    @property
    def clean(self) -> bool:
        return not self.found


def normalise(text: str) -> str:
    """NFKC, without format characters (zero-width spaces and joiners, BOMs, bidi marks)."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf") if not text.isascii() else text


def stock_recognizers(regions: Sequence[str]) -> list:
    """The Presidio recognizers used as they ship."""
    from strata.origin.pii.presidio import predefined_recognizers as p

    return [p.CreditCardRecognizer(), p.IbanRecognizer(), p.IpRecognizer(), p.UkNinoRecognizer(), p.UsSsnRecognizer(),
            p.InAadhaarRecognizer(), p.EsNifRecognizer(), p.EsNieRecognizer(), p.ItFiscalCodeRecognizer(),
            p.PhoneRecognizer(supported_regions=list(regions), leniency=2)]


def build_analyzer(recognizers: list):
    """A Presidio ``AnalyzerEngine`` over exactly these recognizers, with no NLP model."""
    from strata.origin.pii.presidio import AnalyzerEngine, NoOpNlpEngine, RecognizerRegistry

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    nlp.load()
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"],
                          default_score_threshold=MIN_SCORE)


class PiiRedactor:
    """Stateless after construction (thread-safe reads); one per process. Building it imports Presidio (and spaCy,
    which Presidio imports; no spaCy model is loaded) and warms the recognizers once."""

    def __init__(self, regions: Sequence[str] = ("GB", "US", "DE", "FR", "NL", "IE", "IN"),
                 recognizers: list | None = None) -> None:
        from strata.origin.pii.recognizers import custom_recognizers

        self.regions = tuple(regions)
        self.analyzer = build_analyzer(recognizers if recognizers is not None
                                       else stock_recognizers(self.regions) + custom_recognizers())
        self.redact("warm up: 4111 1111 1111 1111, jane@example.com, 12 Baker Street")

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Merged findings of ``text`` (already normalised): ``(start, end, kind)`` in order."""
        found = [r for r in self.analyzer.analyze(text=text, language="en") if r.entity_type in KIND]
        found.sort(key=lambda r: (r.start, -r.end))
        out: list[tuple[int, int, str, float]] = []
        for r in found:
            kind, score = KIND[r.entity_type], r.score
            if out and r.start < out[-1][1]:                   # overlaps the previous finding: merge
                s, e, k, sc = out[-1]
                better = score > sc or (score == sc and r.end - r.start > e - s)
                out[-1] = (s, max(e, r.end), kind if better else k, max(sc, score))
            else:
                out.append((r.start, r.end, kind, score))
        return [(s, e, k) for s, e, k, _ in out]

    def redact(self, text: str) -> Redacted:
        text = normalise(text)
        found: Counter[str] = Counter()
        parts, pos = [], 0
        for start, end, kind in self.spans(text):
            parts += [text[pos:start], f"[{kind.upper()}]"]
            found[kind] += 1
            pos = end
        parts.append(text[pos:])
        return Redacted("".join(parts), dict(found))


@functools.cache
def shared_redactor() -> PiiRedactor:
    """The process's redactor (stateless, so every origin node in a process shares one)."""
    return PiiRedactor()
