"""Request, response and event contracts shared by every tier.

Validation is hand-written rather than pydantic: it runs on the edge hot path for every request
and must cost a few microseconds. Every failure names the field path and the reason.
"""

from __future__ import annotations

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
MAX_TS_MS = 253_402_300_799_999          # 9999-12-31T23:59:59.999Z


@dataclass(slots=True)
class Event:
    """A click-stream event. Keyed by session id on the log; ``event_id`` is its idempotency key.

    Optional fields are None unless the type uses them: ``item_id`` (item events), ``quantity``/``price``
    (purchase), ``impression_id`` (impression; optionally on a click), ``items``/``explored``/``alpha``/
    ``beta``/``tier``/``model_version`` (impression: what was shown, in order, which items were explored and
    the posterior each was sampled from), ``query`` (search), ``categories``/``brands`` (preference),
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
                "explored": {"impression"}, "alpha": {"impression"}, "beta": {"impression"}, "tier": {"impression"},
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
            raise InvalidField(f"epoch ms must be in 0..{MAX_TS_MS}, got {v}", field="ts")
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


def _opt_ident(obj: dict, name: str) -> str | None:
    return None if obj.get(name) is None else _ident(obj, name, None)


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
            raise InvalidField(f"must be a non-empty string of at most {MAX_ID_LEN} characters, got {x!r}",
                               field=f"{name}[{i}]")
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
                raise InvalidField(f"must be a positive number, got {x!r}", field=f"{name}[{i}]")
        post.append([float(x) for x in v])
    tier = obj.get("tier")
    if tier not in TIERS:
        raise InvalidField(f"must be one of {list(TIERS)}, got {tier!r}", field="tier")
    return items, explored, post[0], post[1], tier, _ident(obj, "model_version", None)


def _consent(raw: object) -> dict[str, bool] | None:
    if raw is None:
        return None
    if type(raw) is not dict:
        raise InvalidField(f"must be an object of booleans, got {type(raw).__name__}", field="consent")
    for k, v in raw.items():
        if k not in CONSENT_FLAGS:
            raise InvalidField(f"unknown flag {k!r}; flags are {list(CONSENT_FLAGS)}", field="consent")
        if type(v) is not bool:
            raise InvalidField(f"must be a boolean, got {type(v).__name__}", field=f"consent.{k}")
    return raw


def parse_event(obj: object) -> Event:
    """Validate one decoded event (JSON or msgpack). The one validator of ingest, processor and tests."""
    if type(obj) is not dict:
        raise MalformedBody(f"event must be an object, got {type(obj).__name__}", field="body")
    if not _EVENT_FIELDS.issuperset(obj):
        extra = obj.keys() - _EVENT_FIELDS
        raise InvalidField(f"unknown field(s) {sorted(map(str, extra))}", field="body")
    etype = obj.get("type")
    if etype not in EVENT_TYPES:
        raise InvalidField(f"must be one of {list(EVENT_TYPES)}, got {etype!r}", field="type")
    event_id = _ident(obj, "event_id", None)
    tenant = _ident(obj, "tenant", "default")
    user_id = _ident(obj, "user_id", None)
    session_id = _ident(obj, "session_id", None)
    ts = parse_ts(obj.get("ts"))
    channel = obj.get("channel")
    if channel not in CHANNELS:
        raise InvalidField(f"must be one of {list(CHANNELS)}, got {channel!r}", field="channel")
    ev = Event(event_id, etype, tenant, user_id, session_id, ts, channel,
               slot=_ident(obj, "slot", "home"), consent=_consent(obj.get("consent")))
    check = not obj.keys().isdisjoint(_UNUSED[etype])     # some field this type does not use is present
    if etype in ITEM_EVENTS:
        ev.item_id = _ident(obj, "item_id", None)
    elif check and obj.get("item_id") is not None:
        raise InvalidField(f"is not used by {etype!r} events", field="item_id")
    if etype == "impression":
        ev.impression_id = _ident(obj, "impression_id", None)
        ev.items, ev.explored, ev.alpha, ev.beta, ev.tier, ev.model_version = _impression(obj)
    else:
        if etype == "click":
            ev.impression_id = _opt_ident(obj, "impression_id")
        if check:
            for name in ("impression_id", "items", "explored", "alpha", "beta", "tier", "model_version"):
                if name in _UNUSED[etype] and obj.get(name) is not None:
                    raise InvalidField(f"is not used by {etype!r} events", field=name)
    if etype == "purchase":
        q = _integral(obj.get("quantity"))
        if type(q) is not int or not 1 <= q <= MAX_QUANTITY:
            raise InvalidField(f"must be an integer 1..{MAX_QUANTITY}, got {q!r}", field="quantity")
        price = obj.get("price")
        if type(price) not in (int, float) or not 0 <= price < 1e9:
            raise InvalidField(f"must be a number >= 0 (unit price), got {price!r}", field="price")
        ev.quantity, ev.price = q, float(price)
    elif check and (obj.get("quantity") is not None or obj.get("price") is not None):
        raise InvalidField(f"is not used by {etype!r} events",
                           field="quantity" if obj.get("quantity") is not None else "price")
    if etype == "search":
        q = obj.get("query")
        if type(q) is not str or not q.strip() or len(q) > MAX_QUERY_LEN:
            raise InvalidField(f"must be a non-empty string of at most {MAX_QUERY_LEN} characters", field="query")
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
