"""Request, response and event contracts shared by every tier.

Validation is hand-written rather than pydantic: it runs on the edge hot path for every request
and must cost a few microseconds. Every failure names the field path and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from strata.shared.errors import InvalidField, MalformedBody

MAX_K = 100
MAX_CANDIDATES = 1000
MAX_ID_LEN = 128
CHANNELS = ("web", "app", "email", "sms", "pos")
DEVICES = ("desktop", "mobile", "tablet", "other")
# The first four keep their positions: training data codes event types as indices into this tuple.
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "remove_from_cart", "search", "impression", "preference")
TIERS = ("edge", "streaming", "origin")


@dataclass(slots=True)
class Context:
    channel: str = "web"
    device: str = "other"
    country: str = ""
    hour: int = 12
    age_verified: bool = False     # the caller verified the user's age: age-restricted items may be served
    consent: bool = True           # personalization consent: False -> no personal data is read or used


@dataclass(slots=True)
class RecommendRequest:
    user_id: str
    session_id: str
    slot: str
    tenant: str = "default"
    k: int = 10
    candidates: list[str] | None = None
    context: Context = field(default_factory=Context)
    explain: bool = False


_REQUEST_FIELDS = frozenset(
    {"tenant", "user_id", "session_id", "slot", "k", "candidates", "context", "explain"}
)
_CONTEXT_FIELDS = frozenset({"channel", "device", "country", "hour", "age_verified", "consent"})


def _integral(v: object) -> object:
    """A JSON number written with a fraction of zero (``10.0``) is the integer it equals (JSON Schema's
    ``integer``); anything else unchanged. Only called once a value failed the plain ``int`` check."""
    return int(v) if type(v) is float and v.is_integer() and abs(v) < 2**63 else v


def _ident(obj: dict, name: str, default: str | None, path: str = "") -> str:
    v = obj.get(name, default)
    if v is None:
        raise InvalidField("is required", field=path + name)
    if type(v) is not str:
        raise InvalidField(f"must be a string, got {type(v).__name__}", field=path + name)
    if not v or len(v) > MAX_ID_LEN:
        raise InvalidField(f"must be 1..{MAX_ID_LEN} characters", field=path + name)
    return v


def _context(raw: object) -> Context:
    if raw is None:
        return Context()
    if type(raw) is not dict:
        raise InvalidField(f"must be an object, got {type(raw).__name__}", field="context")
    if not _CONTEXT_FIELDS.issuperset(raw):
        raise InvalidField(f"unknown field(s) {sorted(raw.keys() - _CONTEXT_FIELDS)}", field="context")
    channel = raw.get("channel", "web")
    if channel not in CHANNELS:
        raise InvalidField(f"must be one of {list(CHANNELS)}, got {channel!r}", field="context.channel")
    device = raw.get("device", "other")
    if device not in DEVICES:
        raise InvalidField(f"must be one of {list(DEVICES)}, got {device!r}", field="context.device")
    country = raw.get("country", "")
    if type(country) is not str or len(country) > 8:
        raise InvalidField("must be a country code string (<= 8 chars)", field="context.country")
    hour = raw.get("hour", 12)
    if type(hour) is not int:
        hour = _integral(hour)
    if type(hour) is not int or not 0 <= hour <= 23:
        raise InvalidField(f"must be an integer 0..23, got {hour!r}", field="context.hour")
    age_verified = raw.get("age_verified", False)
    if type(age_verified) is not bool:
        raise InvalidField(f"must be a boolean, got {type(age_verified).__name__}", field="context.age_verified")
    consent = raw.get("consent", True)
    if type(consent) is not bool:
        raise InvalidField(f"must be a boolean, got {type(consent).__name__}", field="context.consent")
    return Context(channel, device, country, hour, age_verified, consent)


def parse_recommend(obj: object) -> RecommendRequest:
    """Validate a decoded body (JSON or msgpack) into a RecommendRequest."""
    if type(obj) is not dict:
        raise MalformedBody(f"body must be an object, got {type(obj).__name__}", field="body")
    if not _REQUEST_FIELDS.issuperset(obj):
        raise InvalidField(f"unknown field(s) {sorted(obj.keys() - _REQUEST_FIELDS)}", field="body")
    k = obj.get("k", 10)
    if type(k) is not int:
        k = _integral(k)
    if type(k) is not int:
        raise InvalidField(f"must be an integer, got {type(k).__name__}", field="k")
    if not 1 <= k <= MAX_K:
        raise InvalidField(f"must be between 1 and {MAX_K}, got {k}", field="k")
    cands = obj.get("candidates")
    if cands is not None:
        if type(cands) is not list:
            raise InvalidField(f"must be a list of item ids, got {type(cands).__name__}", field="candidates")
        if len(cands) > MAX_CANDIDATES:
            raise InvalidField(f"at most {MAX_CANDIDATES} items, got {len(cands)}", field="candidates")
        for c in cands:                 # the plain loop is the fastest check here; the error path finds the index
            if type(c) is not str or not c or len(c) > MAX_ID_LEN:
                i = next(i for i, x in enumerate(cands) if x is c)
                raise InvalidField(f"must be a non-empty string id, got {c!r}", field=f"candidates[{i}]")
    explain = obj.get("explain", False)
    if type(explain) is not bool:
        raise InvalidField(f"must be a boolean, got {type(explain).__name__}", field="explain")
    return RecommendRequest(
        user_id=_ident(obj, "user_id", None),
        session_id=_ident(obj, "session_id", None),
        slot=_ident(obj, "slot", "home"),
        tenant=_ident(obj, "tenant", "default"),
        k=k,
        candidates=cands,
        context=_context(obj.get("context")),
        explain=explain,
    )


# -- events ----------------------------------------------------------------------------------------------------
ITEM_EVENTS = frozenset({"view", "click", "add_to_cart", "remove_from_cart", "purchase"})
CONSENT_FLAGS = ("personalization", "marketing")
MAX_QUERY_LEN = 256
MAX_PREFERENCES = 50
MAX_QUANTITY = 10_000
MAX_PRICE = 1e9                          # unit price, exclusive
MAX_LINE_CENTS = 10**11                  # price x quantity of one purchase, in cents (1e9 currency units): a
#                                          profile's int64 revenue counter holds 92 million such purchases
MAX_TS_MS = 253_402_300_799_999          # 9999-12-31T23:59:59.999Z
SHOW_CHARS = 48                          # how much of a bad value a reason repeats
# Event ids (event_id, tenant, user_id, session_id, slot, item ids, impression_id, model_version, category and
# brand names) are 1..128 characters of any kind but control characters (U+0000-001F, U+007F-009F): they are
# joined with U+001F in some store values. Ids enter store keys through ``shared.keys.part`` (injective).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# A search event's query: no control characters, and at least one character that is not a space. The spaces are
# spelled out (JSON Schema patterns are ECMA-262, whose \\s differs from Python's str.strip: U+001C-001F, U+0085,
# U+FEFF), so the schema (``QUERY_PATTERN``) and the parser apply one rule (``fullmatch``: ECMA's ``$`` is the end of
# the string, Python's also matches before a final newline).
SPACES = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
QUERY_PATTERN = f"^[^{_CONTROLS}]*[^{_CONTROLS}{SPACES}][^{_CONTROLS}]*$"
_QUERY = re.compile(QUERY_PATTERN)


def _show(v: object) -> str:
    """A bad value for a reason: its repr, cut to ``SHOW_CHARS`` characters (a reason never echoes megabytes)."""
    if type(v) is str:
        return repr(v) if len(v) <= SHOW_CHARS else f"{v[:SHOW_CHARS]!r}... ({len(v)} characters)"
    if type(v) is list or type(v) is dict:
        return f"a {type(v).__name__} of {len(v)}"
    r = repr(v)
    return r if len(r) <= SHOW_CHARS else r[:SHOW_CHARS] + "..."


def _check_id(v: str, name: str) -> str:
    if not v.isprintable() and _CONTROL.search(v):
        raise InvalidField("must not hold control characters (U+0000-001F, U+007F-009F)", field=name)
    return v


def _event_ident(obj: dict, name: str, default: str | None) -> str:
    v = obj.get(name, default)
    if type(v) is str and v and len(v) <= MAX_ID_LEN and v.isprintable():      # the common case, inline
        return v
    return _check_id(_ident(obj, name, default), name)


@dataclass(slots=True)
class Event:
    """A click-stream event. Keyed by session id on the log; ``event_id`` is its idempotency key.

    Optional fields are None unless the type uses them: ``item_id`` (item events), ``quantity``/``price``
    (purchase), ``impression_id`` (impression; optionally on a click), ``items``/``explored``/``alpha``/
    ``beta``/``prior``/``tier``/``model_version`` (impression: what was shown, in order, which items were explored,
    the posterior each was sampled from and, optionally, the scorer's click probability behind it), ``query`` (search), ``categories``/``brands`` (preference),
    ``consent`` (any event: the user's current consent flags).
    """

    event_id: str
    type: str
    tenant: str
    user_id: str
    session_id: str
    ts_ms: int
    channel: str
    item_id: str | None = None
    slot: str = "home"
    impression_id: str | None = None
    quantity: int | None = None
    price: float | None = None
    items: list[str] | None = None
    explored: list[bool] | None = None
    alpha: list[float] | None = None
    beta: list[float] | None = None
    prior: list[float] | None = None
    tier: str | None = None
    model_version: str | None = None
    query: str | None = None
    categories: list[str] | None = None
    brands: list[str] | None = None
    consent: dict[str, bool] | None = None

    def to_dict(self) -> dict:
        """The wire form (``ts`` as epoch ms; fields that are None are left out), keys in field order."""
        out = {"event_id": self.event_id, "type": self.type, "tenant": self.tenant, "user_id": self.user_id,
               "session_id": self.session_id, "ts": self.ts_ms, "channel": self.channel}
        for name in _OPTIONAL.get(self.type, _ALL_OPTIONAL):   # only the fields this type can have set
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out


_EVENT_FIELDS = frozenset({"ts", *Event.__slots__} - {"ts_ms"})
# per type, the fields it does not use: an event without any of them skips the "is not used" checks below
_TYPE_FIELDS = {"item_id": ITEM_EVENTS, "impression_id": {"impression", "click"}, "items": {"impression"},
                "explored": {"impression"}, "alpha": {"impression"}, "beta": {"impression"}, "prior": {"impression"}, "tier": {"impression"},
                "model_version": {"impression"}, "quantity": {"purchase"}, "price": {"purchase"},
                "query": {"search"}, "categories": {"preference"}, "brands": {"preference"}}
TYPE_FIELDS = _TYPE_FIELDS         # which event types use each optional field (the schemas read it)
_UNUSED = {t: frozenset(f for f, types in _TYPE_FIELDS.items() if t not in types) for t in EVENT_TYPES}
_ALL_OPTIONAL = Event.__slots__[7:]          # after event_id .. channel
_OPTIONAL = {t: tuple(n for n in _ALL_OPTIONAL if n not in _UNUSED[t]) for t in EVENT_TYPES}


def parse_ts(v: object) -> int:
    """UTC epoch milliseconds (int) or an RFC 3339 string with an offset -> epoch ms."""
    if type(v) is float:
        v = _integral(v)
    if type(v) is int:
        if not 0 <= v <= MAX_TS_MS:
            raise InvalidField(f"epoch ms must be in 0..{MAX_TS_MS}, got {_show(v)}", field="ts")
        return v
    if type(v) is str:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidField(f"must be epoch ms or an RFC 3339 time, got {v[:40]!r}", field="ts") from None
        if dt.tzinfo is None or "T" not in v.upper():
            raise InvalidField(f"RFC 3339 time needs a date, 'T', a time and an offset, got {v[:40]!r}",
                               field="ts")
        ms = int(dt.timestamp() * 1000)
        if not 0 <= ms <= MAX_TS_MS:
            raise InvalidField(f"must be after 1970-01-01, got {v[:40]!r}", field="ts")
        return ms
    if v is None:
        raise InvalidField("is required", field="ts")
    raise InvalidField(f"must be epoch ms (integer) or an RFC 3339 string, got {type(v).__name__}", field="ts")


@dataclass(frozen=True, slots=True)
class TsWindow:
    """Event times accepted around a reference time (the ingest's clock, or a record's log timestamp): at most
    ``skew_ms`` ahead of it and at most ``horizon_ms`` behind it."""

    skew_ms: int
    horizon_ms: int

    def check(self, ts_ms: int, ref_ms: int) -> None:
        if ts_ms > ref_ms + self.skew_ms:
            raise InvalidField(f"is {(ts_ms - ref_ms) / 1000:.0f} s in the future; at most {self.skew_ms / 1000:g} s "
                               "ahead of the receive time is accepted", field="ts")
        if ts_ms < ref_ms - self.horizon_ms:
            raise InvalidField(f"is {(ref_ms - ts_ms) / 1000:.0f} s old; at most {self.horizon_ms / 1000:g} s "
                               "before the receive time is accepted", field="ts")


def _opt_ident(obj: dict, name: str) -> str | None:
    return None if obj.get(name) is None else _event_ident(obj, name, None)


def _id_list(obj: dict, name: str, max_len: int, min_len: int = 1) -> list[str]:
    v = obj.get(name)
    if v is None:
        raise InvalidField("is required", field=name)
    if type(v) is not list:
        raise InvalidField(f"must be a list of strings, got {type(v).__name__}", field=name)
    if not min_len <= len(v) <= max_len:
        raise InvalidField(f"must have {min_len}..{max_len} entries, got {len(v)}", field=name)
    for i, x in enumerate(v):
        if type(x) is not str or not x or len(x) > MAX_ID_LEN:
            raise InvalidField(f"must be a non-empty string of at most {MAX_ID_LEN} characters, got {_show(x)}",
                               field=f"{name}[{i}]")
        _check_id(x, f"{name}[{i}]")
    return v


def _impression(obj: dict) -> tuple:
    items = _id_list(obj, "items", MAX_K)
    n = len(items)
    explored = obj.get("explored", [False] * n)
    if type(explored) is not list or len(explored) != n:
        raise InvalidField(f"must be a list of {n} booleans (one per item)", field="explored")
    for i, x in enumerate(explored):
        if type(x) is not bool:
            raise InvalidField(f"must be a boolean, got {type(x).__name__}", field=f"explored[{i}]")
    post = []
    for name in ("alpha", "beta"):
        v = obj.get(name)
        if v is None:
            raise InvalidField("is required (the posterior each item was sampled from)", field=name)
        if type(v) is not list or len(v) != n:
            raise InvalidField(f"must be a list of {n} numbers (one per item)", field=name)
        for i, x in enumerate(v):
            if type(x) not in (int, float) or not 0 < x < 1e12:
                raise InvalidField(f"must be a positive number, got {_show(x)}", field=f"{name}[{i}]")
        post.append([float(x) for x in v])
    prior = obj.get("prior")
    if prior is not None:
        if type(prior) is not list or len(prior) != n:
            raise InvalidField(f"must be a list of {n} probabilities (one per item)", field="prior")
        for i, x in enumerate(prior):
            if type(x) not in (int, float) or not 0 <= x <= 1:
                raise InvalidField(f"must be a number in [0, 1], got {_show(x)}", field=f"prior[{i}]")
        prior = [float(x) for x in prior]
    tier = obj.get("tier")
    if tier not in TIERS:
        raise InvalidField(f"must be one of {list(TIERS)}, got {_show(tier)}", field="tier")
    return items, explored, post[0], post[1], prior, tier, _event_ident(obj, "model_version", None)


def _consent(raw: object) -> dict[str, bool] | None:
    if raw is None:
        return None
    if type(raw) is not dict:
        raise InvalidField(f"must be an object of booleans, got {type(raw).__name__}", field="consent")
    for k, v in raw.items():
        if k not in CONSENT_FLAGS:
            raise InvalidField(f"unknown flag {_show(k)}; flags are {list(CONSENT_FLAGS)}", field="consent")
        if type(v) is not bool:
            raise InvalidField(f"must be a boolean, got {type(v).__name__}", field=f"consent.{k}")
    return raw


def parse_event(obj: object, ts_window: TsWindow | None = None, ref_ms: int = 0) -> Event:
    """Validate one decoded event (JSON or msgpack). The one validator of ingest, processor and tests. With
    ``ts_window``, ``ts`` must also lie in that window around ``ref_ms`` (the receive time)."""
    if type(obj) is not dict:
        raise MalformedBody(f"event must be an object, got {type(obj).__name__}", field="body")
    if not _EVENT_FIELDS.issuperset(obj):
        extra = sorted(_show(k) if type(k) is str else _show(repr(k)) for k in obj.keys() - _EVENT_FIELDS)
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise InvalidField(f"unknown field(s) [{shown}]", field="body")
    etype = obj.get("type")
    if etype not in EVENT_TYPES:
        raise InvalidField(f"must be one of {list(EVENT_TYPES)}, got {_show(etype)}", field="type")
    event_id = _event_ident(obj, "event_id", None)
    tenant = _event_ident(obj, "tenant", "default")
    user_id = _event_ident(obj, "user_id", None)
    session_id = _event_ident(obj, "session_id", None)
    ts = parse_ts(obj.get("ts"))
    if ts_window is not None and not ref_ms - ts_window.horizon_ms <= ts <= ref_ms + ts_window.skew_ms:
        ts_window.check(ts, ref_ms)
    channel = obj.get("channel")
    if channel not in CHANNELS:
        raise InvalidField(f"must be one of {list(CHANNELS)}, got {_show(channel)}", field="channel")
    ev = Event(event_id, etype, tenant, user_id, session_id, ts, channel,
               slot=_event_ident(obj, "slot", "home"), consent=_consent(obj.get("consent")))
    check = not obj.keys().isdisjoint(_UNUSED[etype])     # some field this type does not use is present
    if etype in ITEM_EVENTS:
        ev.item_id = _event_ident(obj, "item_id", None)
    elif check and obj.get("item_id") is not None:
        raise InvalidField(f"is not used by {etype!r} events", field="item_id")
    if etype == "impression":
        ev.impression_id = _event_ident(obj, "impression_id", None)
        ev.items, ev.explored, ev.alpha, ev.beta, ev.prior, ev.tier, ev.model_version = _impression(obj)
    else:
        if etype == "click":
            ev.impression_id = _opt_ident(obj, "impression_id")
        if check:
            for name in ("impression_id", "items", "explored", "alpha", "beta", "prior", "tier", "model_version"):
                if name in _UNUSED[etype] and obj.get(name) is not None:
                    raise InvalidField(f"is not used by {etype!r} events", field=name)
    if etype == "purchase":
        q = _integral(obj.get("quantity"))
        if type(q) is not int or not 1 <= q <= MAX_QUANTITY:
            raise InvalidField(f"must be an integer 1..{MAX_QUANTITY}, got {_show(q)}", field="quantity")
        price = obj.get("price")
        if (type(price) is not int and type(price) is not float) or not 0 <= price < MAX_PRICE:
            raise InvalidField(f"must be a number >= 0 (unit price), got {_show(price)}", field="price")
        if round(price * q * 100) > MAX_LINE_CENTS:
            raise InvalidField(f"price x quantity must be at most {MAX_LINE_CENTS // 100:.0e}, got "
                               f"{price * q:.0f}", field="price")
        ev.quantity, ev.price = q, float(price)
    elif check and (obj.get("quantity") is not None or obj.get("price") is not None):
        raise InvalidField(f"is not used by {etype!r} events",
                           field="quantity" if obj.get("quantity") is not None else "price")
    if etype == "search":
        q = obj.get("query")
        if type(q) is not str or len(q) > MAX_QUERY_LEN or not _QUERY.fullmatch(q):
            raise InvalidField(f"must be a string of at most {MAX_QUERY_LEN} characters with a non-space character "
                               "and no control characters", field="query")
        ev.query = q
    elif check and obj.get("query") is not None:
        raise InvalidField(f"is not used by {etype!r} events", field="query")
    if etype == "preference":
        cats = _id_list(obj, "categories", MAX_PREFERENCES, 0) if obj.get("categories") is not None else []
        brands = _id_list(obj, "brands", MAX_PREFERENCES, 0) if obj.get("brands") is not None else []
        if not cats and not brands:
            raise InvalidField("a preference event names at least one category or brand", field="categories")
        ev.categories, ev.brands = cats, brands
    elif check:
        for name in ("categories", "brands"):
            if obj.get(name) is not None:
                raise InvalidField(f"is not used by {etype!r} events", field=name)
    return ev
