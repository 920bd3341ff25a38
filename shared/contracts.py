"""Request, response and event contracts shared by every tier.

Validation is hand-written rather than pydantic: it runs on the edge hot path for every request
and must cost a few microseconds. Every failure names the field path and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.errors import InvalidField, MalformedBody

MAX_K = 100
MAX_CANDIDATES = 1000
MAX_ID_LEN = 128
CHANNELS = ("web", "app", "email", "sms", "pos")
DEVICES = ("desktop", "mobile", "tablet", "other")
EVENT_TYPES = ("view", "click", "cart", "purchase")
TIERS = ("edge", "streaming", "origin")


@dataclass(slots=True)
class Context:
    channel: str = "web"
    device: str = "other"
    country: str = ""
    hour: int = 12
    age_verified: bool = False     # the caller verified the user's age: age-restricted items may be served


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
_CONTEXT_FIELDS = frozenset({"channel", "device", "country", "hour", "age_verified"})


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
    extra = raw.keys() - _CONTEXT_FIELDS
    if extra:
        raise InvalidField(f"unknown field(s) {sorted(extra)}", field="context")
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
    if type(hour) is not int or not 0 <= hour <= 23:
        raise InvalidField(f"must be an integer 0..23, got {hour!r}", field="context.hour")
    age_verified = raw.get("age_verified", False)
    if type(age_verified) is not bool:
        raise InvalidField(f"must be a boolean, got {type(age_verified).__name__}", field="context.age_verified")
    return Context(channel, device, country, hour, age_verified)


def parse_recommend(obj: object) -> RecommendRequest:
    """Validate a decoded body (JSON or msgpack) into a RecommendRequest."""
    if type(obj) is not dict:
        raise MalformedBody(f"body must be an object, got {type(obj).__name__}", field="body")
    extra = obj.keys() - _REQUEST_FIELDS
    if extra:
        raise InvalidField(f"unknown field(s) {sorted(extra)}", field="body")
    k = obj.get("k", 10)
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
        for i, c in enumerate(cands):
            if type(c) is not str or not c or len(c) > MAX_ID_LEN:
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


@dataclass(slots=True)
class Event:
    """A click-stream event. Keyed by session id on the log; deduplicated by ``event_id``."""

    event_id: str
    type: str
    tenant: str
    user_id: str
    session_id: str
    item_id: str
    channel: str
    ts_ms: int
    slot: str = "home"
    impression_id: str | None = None

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__slots__}


def parse_event(obj: object) -> Event:
    if type(obj) is not dict:
        raise MalformedBody(f"event must be an object, got {type(obj).__name__}", field="body")
    etype = obj.get("type")
    if etype not in EVENT_TYPES:
        raise InvalidField(f"must be one of {list(EVENT_TYPES)}, got {etype!r}", field="type")
    channel = obj.get("channel", "web")
    if channel not in CHANNELS:
        raise InvalidField(f"must be one of {list(CHANNELS)}, got {channel!r}", field="channel")
    ts = obj.get("ts_ms")
    if type(ts) is not int or ts < 0:
        raise InvalidField("must be a non-negative integer (UTC epoch ms)", field="ts_ms")
    imp = obj.get("impression_id")
    if imp is not None and type(imp) is not str:
        raise InvalidField("must be a string", field="impression_id")
    return Event(
        event_id=_ident(obj, "event_id", None),
        type=etype,
        tenant=_ident(obj, "tenant", "default"),
        user_id=_ident(obj, "user_id", None),
        session_id=_ident(obj, "session_id", None),
        item_id=_ident(obj, "item_id", None),
        channel=channel,
        ts_ms=ts,
        slot=_ident(obj, "slot", "home"),
        impression_id=imp,
    )
