"""The recognizers the origin's PII redactor runs: Presidio's own pattern recognizers where one exists and holds up
on the labelled set (IBAN, IP, phone numbers, UK NINO, national ids with checksums), and Presidio
``PatternRecognizer``s written here for what the stock ones miss in shop queries: card numbers with any
separator (Luhn-checked), CVVs and expiry dates, dates of birth, passports and SSNs by their cue words, unicode and
spelled-out emails, street addresses in any case (UK/US, German, French), and person names (cue phrases and a
first-name list: no spaCy model is needed or loaded).

Every recognizer here runs on NFKC-normalised text (full-width digits are ASCII digits by then).
"""

from __future__ import annotations

import re

from stdnum import iban as std_iban
from stdnum import luhn

from strata.origin.pii.presidio import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CASE = re.DOTALL | re.MULTILINE                    # case-sensitive (Presidio's default ignores case)
_ANY_CASE = _CASE | re.IGNORECASE


def _pr(entity: str, name: str, regex: str, score: float = 0.9, flags: int = _ANY_CASE) -> PatternRecognizer:
    return PatternRecognizer(supported_entity=entity, name=name, patterns=[Pattern(name, regex, score)],
                             global_regex_flags=flags)


class CardRecognizer(PatternRecognizer):
    """13-19 digits with any one separator between groups (space, dash, dot, slash, underscore) or none; kept only
    when the Luhn check holds."""

    def __init__(self) -> None:
        super().__init__(supported_entity="CARD", name="CardRecognizer", global_regex_flags=_ANY_CASE,
                         patterns=[Pattern("card", r"(?<![\d./-])\d(?:[ ./_-]{0,2}\d){12,18}(?![\d])", 0.9)])

    def validate_result(self, pattern_text: str) -> bool:
        digits = re.sub(r"\D", "", pattern_text)
        return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


class IbanAnyCase(PatternRecognizer):
    """IBANs in any case and with spaces (Presidio's reads upper case only), kept when the mod-97 check holds."""

    def __init__(self) -> None:
        super().__init__(supported_entity="IBAN_CODE", name="IbanAnyCase", global_regex_flags=_ANY_CASE,
                         patterns=[Pattern("iban", r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", 0.9)])

    def validate_result(self, pattern_text: str) -> bool:
        return std_iban.is_valid(pattern_text.upper())


class CueRecognizer(PatternRecognizer):
    """A value that is PII because of the words before it ("cvv 123", "passport no. 533380006"): the pattern's
    group ``v`` is the finding, the cue stays (it tells the reader what was there)."""

    def __init__(self, entity: str, name: str, cue: str, value: str, flags: int = _ANY_CASE) -> None:
        self._re = re.compile(rf"(?:{cue})(?P<v>{value})", flags)
        super().__init__(supported_entity=entity, name=name, patterns=[Pattern(name, self._re.pattern, 0.9)],
                         global_regex_flags=flags)

    def analyze(self, text: str, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        return [RecognizerResult(self.supported_entities[0], m.start("v"), m.end("v"), 0.9)
                for m in self._re.finditer(text)]


_MONTHS = ("jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
           "oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
_DATE = (r"(?:\d{1,2}[./-]\d{1,2}[./-](?:19|20)?\d{2}|(?:19|20)\d{2}-\d{1,2}-\d{1,2}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\.?,?\s+(?:19|20)\d{{2}}"
         rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}})")
# A full date in a year long enough ago to be a birth date rather than an order or a delivery.
_OLD_DATE = (r"(?<![\d./-])(?:\d{1,2}[./-]\d{1,2}[./-](?:19\d{2}|200\d|201[0-2])|(?:19\d{2}|200\d|201[0-2])-\d{1,2}-\d{1,2}"
             rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\.?,?\s+(?:19\d{{2}}|200\d|201[0-2])"
             rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19\d{{2}}|200\d|201[0-2]))(?![\d])")

_STREET = ("street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|court|ct|place|pl|square|sq|terrace|way|"
           "close|crescent|gardens|grove|parkway|pkwy|highway|hwy|row|mews")
_ADDRESS_CUE = (r"(?:deliver(?:ed|y)?|ship(?:ped|ping)?|send|sent|post(?:ed)?|bring|drop(?:\s+off)?|live|living|"
                r"lives|located|address(?:\s+is)?|home(?:\s+is)?|stay(?:ing)?)\s+(?:it\s+|them\s+|off\s+)?"
                r"(?:to|at|in|on|is|:)?\s*")
_RELATION = ("wife|husband|partner|son|daughter|mum|mom|mother|dad|father|sister|brother|friend|boss|colleague|"
             "neighbou?r|girlfriend|boyfriend|fianc[eé]e?|grandma|grandpa|grandmother|grandfather|aunt|uncle|"
             "niece|nephew|cousin|teacher|kid|child|baby|nan|nana")
_NAME = r"[A-Z][a-zà-öø-ÿ'’-]+"
# Common given names (several languages): a capitalised pair starting with one of these is a name without a cue.
FIRST_NAMES = _set("""
aaron abdul adam adrian ahmed aisha alan albert alex alexander alexandra alice alicia amanda amelia amir amy ana
andrea andrew angela anna anne anthony antonio arjun ashley barbara ben benjamin beth betty bob brian bruce carl
carlos carmen carol caroline catherine charles charlie charlotte chen chloe chris christina christopher claire
daniel david deborah dennis diana donald dorothy edward elena elizabeth ella emily emma eric fatima francesca
francis frank gary george grace hannah hans harry heather helen henry isabella jack jacob james jane janet jason
jennifer jessica jim joan joe john jonathan jose joseph joshua juan julia julie karen kate katherine kevin kim
laura lauren linda lisa liam lucas lucy luis maria mark martha martin mary matthew maya megan mei michael
michelle mike mohammed muhammad nancy natalie nicholas nicole noah oliver olivia omar pablo patricia patrick paul
peter priya rachel rahul raj rebecca richard robert ryan sam samuel sandra sarah scott sean sofia sophia sophie
stephen steven susan thomas timothy tom victoria william wei yuki zoe klaus jürgen müller hans-peter francois
françois jean pierre marie giulia giuseppe marco luca hiroshi sanjay anil sunita deepak
""")


class NameRecognizer(EntityRecognizer):
    """Person names without an NER model: capitalised words after a cue ("my name is", "for my wife", "Mr",
    "Dear"), any case after "my name is"/"call me", or a capitalised pair whose first word is a common given
    name ("Jane Smith")."""

    _CUED = re.compile(
        rf"(?i:\b(?:for|to|from|with|by|and)\s+my\s+(?:{_RELATION})(?:'s)?,?\s+|\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|"
        rf"dear|madam)\.?\s+|\b(?:signed|regards|cheers|thanks|love),?\s+|\b(?:recipient|name|addressee)\s*[:=]\s*)"
        rf"(?P<v>{_NAME}(?:\s+{_NAME}){{0,2}})")
    _SAID = re.compile(r"\b(?:my\s+name\s+is|my\s+name's|call\s+me|i\s+am\s+called|this\s+is)\s+"
                       r"(?P<v>[^\W\d_][\w'’-]+(?:\s+(?!and\b|i\b|im\b|please\b)[^\W\d_][\w'’-]+){0,2})",
                       re.IGNORECASE)
    _PAIR = re.compile(rf"(?<![\w-])(?P<first>{_NAME})(?P<rest>(?:\s+(?:[A-Z]\.\s*)?{_NAME}){{1,2}})")

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="NameRecognizer", supported_language="en")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        out = [RecognizerResult("PERSON", m.start("v"), m.end("v"), 0.85) for m in self._CUED.finditer(text)]
        for m in self._SAID.finditer(text):
            if m.group("v").split()[0].lower() not in _NOT_A_NAME:
                out.append(RecognizerResult("PERSON", m.start("v"), m.end("v"), 0.85))
        out += [RecognizerResult("PERSON", m.start(), m.end(), 0.8) for m in self._PAIR.finditer(text)
                if m.group("first").lower() in FIRST_NAMES]
        return out


_NOT_A_NAME = _set("a an the looking after interested so very just new not here back trying going in for "
                        "allergic vegan vegetarian pregnant on at now tomorrow today tonight when if asap")


def custom_recognizers() -> list[EntityRecognizer]:
    tld = "com|net|org|co|uk|de|fr|es|it|nl|io|in|us|eu|info|ch|at|be|ie"
    sep = r"(?:\s*(?:\.|\(dot\)|\[dot\]|\{dot\})\s*|\s+dot\s+)"
    at = r"(?:\s*(?:@|\(at\)|\[at\]|\{at\})\s*|\s+at\s+)"
    return [
        CardRecognizer(),
        IbanAnyCase(),
        # unicode local parts and domains; then "(at)"/"[dot]"/" at ... dot com" spellings ending in a known TLD
        _pr("EMAIL", "EmailUnicode", r"(?<![\w.+%-])[\w.+%-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])"),
        _pr("EMAIL", "EmailSpelled", rf"(?<![\w.])\w+(?:{sep}\w+)*{at}\w+(?:{sep}\w+)*{sep}(?:{tld})\b", 0.8),
        CueRecognizer("CVV", "Cvv", r"\b(?:cvv2?|cvc2?|cid|csc|security\s+code|card\s+code)\s*(?:no\.?|number|is|:|#)?\s*",
                      r"\d{3,4}(?!\d)"),
        CueRecognizer("EXPIRY", "Expiry", r"\b(?:exp(?:iry|ires|iration|\.)?(?:\s+date)?|valid\s+(?:thru|through|until)|"
                      r"good\s+thru)\.?\s*(?:is|:|on)?\s*", r"(?:0?[1-9]|1[0-2])\s*[/.-]\s*(?:20)?\d{2}(?!\d)"),
        CueRecognizer("DOB", "DobCue", r"\b(?:born(?:\s+on)?|dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|"
                      r"birthday(?:\s+is)?)\s*(?:is|:|on)?\s*", _DATE),
        _pr("DOB", "DobOld", _OLD_DATE, 0.6),
        CueRecognizer("PASSPORT", "Passport", r"\bpassport(?:\s+(?:number|no\.?|num|#|id))?\s*(?:is|:|#)?\s*",
                      r"[A-Z0-9]{6,10}(?![A-Z0-9])"),
        _pr("SSN", "Ssn", r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- .])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])", 0.85),
        CueRecognizer("SSN", "SsnCue", r"\b(?:ssn|social\s+security(?:\s+(?:number|no\.?))?)\s*(?:is|:|#)?\s*",
                      r"\d{3}[- .]?\d{2}[- .]?\d{4}(?!\d)"),
        CueRecognizer("NATIONAL_ID", "NationalIdCue",
                      r"\b(?:national\s+id(?:entity)?|id\s+card|identity\s+card|personalausweis|steuer-?id|"
                      r"tax\s+id|aadhaar|dni|nie|nif|codice\s+fiscale|bsn|ni\s+number|nino|national\s+insurance"
                      r"(?:\s+number)?)\s*(?:no\.?|number|is|:|#)?\s*",
                      r"[A-Z0-9](?:[ -]?[A-Z0-9]){5,17}(?![A-Z0-9])"),
        # house number + street in any case; lower-case ones only after a delivery cue ("3 new road bikes" stays)
        _pr("ADDRESS", "StreetCapitalised",
            rf"\b(?i:(?:flat|apt|apartment|unit|suite)\s*#?\d+[a-z]?,?\s+)?\d{{1,5}}[A-Za-z]?,?\s+"
            rf"(?:[A-Z][\w'.-]*\s+){{1,4}}?(?i:{_STREET}|street|road|avenue|lane|drive)\b\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?",
            0.85, _CASE),
        CueRecognizer("ADDRESS", "StreetCued", r"\b" + _ADDRESS_CUE,
                      rf"(?:(?:flat|apt|apartment|unit|suite)\s*#?\d+[a-z]?,?\s+)?\d{{1,5}}[a-z]?,?\s+"
                      rf"(?:[^\W\d_][\w'.-]*\s+){{1,4}}?(?:{_STREET})\b\.?(?:\s+(?:n|s|e|w|ne|nw|se|sw)\b)?"
                      r"(?:,?\s+[^\W\d_]{3,}(?=\s*(?:[,.;!?]|$)))?"),
        _pr("ADDRESS", "StreetDe", r"\b[^\W\d_][\w-]*(?:stra(?:ß|ss)e|str\.|weg|gasse|allee|platz|ring|damm|ufer)"
            r"\s+\d{1,4}\s?[a-z]?\b(?:,?\s+\d{5}(?:\s+[^\W\d_][\w-]+)?)?", 0.85),
        _pr("ADDRESS", "StreetFr", r"\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|chemin|"
            r"all[ée]e|impasse|quai|route)\s+(?:(?:de\s+la|de\s+l'|du|des|de|d')\s*)?[^\W\d_][\w'-]+", 0.85),
        _pr("ADDRESS", "UkPostcode", r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b", 0.8, _CASE),
        _pr("ADDRESS", "UsStateZip", r"\b(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|"
            r"O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[AT]|W[AIVY])\s+\d{5}(?:-\d{4})?\b", 0.8, _CASE),
        NameRecognizer(),
    ]
