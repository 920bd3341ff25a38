"""``POST /v1/events`` as a declared pipeline behind the ``shared.serving.pipeline.Handler`` protocol.

    split -> validate -> append -> encode

One event or ``{"events": [...]}`` (up to ``max_events``), JSON or msgpack. ``split`` finds each event's bytes
without decoding anything (``streaming.envelope``): the event limit is checked first, and each event is then
decoded on its own, at most ``max_event_bytes``, and checked by the one validator
(``shared.contracts.api.parse_event``, with ``ts`` within ``ts_skew_s`` ahead / ``ts_horizon_s`` behind the
receive time). Valid events go to the events topic keyed by session; invalid ones, and a body refused as a
whole (malformed, too many events), go to the dead-letter topic (``streaming.dead_letter``: bounded, always
serializable), all acknowledged by the log (acks=all) before the answer: 202 ``{"accepted": n, "rejected":
[{"index", "field", "reason"}]}``, or 422 with the same list when nothing was valid. A log that does not
acknowledge -> 503 + Retry-After, and nothing is claimed accepted. A body refused as a whole keeps its 4xx
even when its dead-letter record cannot be written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from strata.shared.auth.gate import Caller, bind_tenant
from strata.shared.config import StreamingSettings
from strata.shared.contracts.api import TsWindow, parse_event
from strata.shared.contracts.event_records import encode_event, event_key
from strata.shared.errors import Forbidden, MalformedBody, PayloadTooLarge, StrataError
from strata.shared.serving.codecs import choose_response_type, encode
from strata.shared.serving.metrics import Instruments
from strata.shared.serving.pipeline import SUSPEND, Pending, Pipeline, Reply
from strata.streaming import dead_letter
from strata.streaming.envelope import Split, decode_one, split
from strata.streaming.errors import EventsRejected
from strata.streaming.log import EventLog

ROUTE = "/v1/events"


@dataclass(slots=True)
class IngestCtx:
    body: bytes
    ctype: bytes | None
    media: str
    split: Split | None = None                       # where each event is (``envelope.split``)
    accepted: list = field(default_factory=list)     # (key, value) per valid event
    rejected: list = field(default_factory=list)     # {"index", "field", "reason"}
    dead: list = field(default_factory=list)         # dead-letter record values
    refused: StrataError | None = None               # the body was refused as a whole
    single: object = None                            # a one-event body, decoded
    caller: Caller | None = None                     # who the gate admitted (None: auth off): the tenant


def refusal_record(exc: StrataError, body: bytes | memoryview, size: int) -> bytes:
    """The dead-letter record of a request body refused as a whole: its first bytes and its size."""
    return dead_letter.record("ingest", exc.code, exc.field, exc.reason, int(time.time() * 1000), body, size=size,
                              envelope=True)


class Locate:
    name = "split"

    def __init__(self, max_events: int, max_event_bytes: int) -> None:
        self.max_events = max_events
        self.max_event_bytes = max_event_bytes

    def run(self, ctx: IngestCtx) -> object:
        try:
            s = split(ctx.body, ctx.ctype, self.max_events, self.max_event_bytes)
        except StrataError as exc:
            if exc.status == 415:
                raise
            ctx.refused = exc
            ctx.dead.append(refusal_record(exc, ctx.body, len(ctx.body)))
            return None
        ctx.split = s
        if not s.batch and len(ctx.body) <= self.max_event_bytes:    # one event: bytes that do not decode are a
            try:                                                     # malformed body (400), not a rejected event
                ctx.single = decode_one(memoryview(ctx.body), s.codec)
            except StrataError as exc:
                exc = MalformedBody(exc.reason.replace("event is", "body is", 1), field="body")
                ctx.refused = exc
                ctx.dead.append(refusal_record(exc, ctx.body, len(ctx.body)))
        return None


class Validate:
    name = "validate"

    def __init__(self, cfg: StreamingSettings) -> None:
        self.max_event_bytes = cfg.max_event_bytes
        self.window = TsWindow(int(cfg.ts_skew_s * 1000), int(cfg.ts_horizon_s * 1000))

    def run(self, ctx: IngestCtx) -> None:
        if ctx.refused is not None:
            return
        now_ms = int(time.time() * 1000)
        sp = ctx.split
        codec, limit, window, decoded = sp.codec, self.max_event_bytes, self.window, sp.decoded
        accepted = ctx.accepted
        caller = ctx.caller
        for i in range(sp.count):
            obj = None
            try:
                if decoded is not None:
                    obj = decoded[i]
                elif ctx.single is not None:
                    obj = ctx.single
                else:
                    raw = sp.raw(i)
                    if len(raw) > limit:
                        raise PayloadTooLarge(f"event of {len(raw)} bytes exceeds the {limit}-byte limit",
                                              field="body")
                    obj = decode_one(raw, codec)
                if caller is not None:
                    bind_tenant(obj, caller)     # an event naming another tenant refuses the request (403)
                ev = parse_event(obj, window, now_ms)
            except Forbidden:
                raise
            except StrataError as exc:
                rej = {"index": i, "field": exc.field, "reason": exc.reason}
                ctx.rejected.append(rej)
                ctx.dead.append(dead_letter.record("ingest", exc.code, exc.field, exc.reason, now_ms, sp.raw(i), obj,
                                                   index=i))
                continue
            accepted.append((event_key(ev.tenant, ev.session_id), encode_event(ev.to_dict())))


class Append:
    name = "append"
    suspends = True

    def __init__(self, log: EventLog, events_topic: str, dead_letter_topic: str) -> None:
        self.log = log
        self.events_topic = events_topic
        self.dead_letter_topic = dead_letter_topic

    def run(self, ctx: IngestCtx) -> object:
        return SUSPEND

    async def complete(self, ctx: IngestCtx) -> None:
        records = [(self.events_topic, k, v) for k, v in ctx.accepted]
        records += [(self.dead_letter_topic, None, v) for v in ctx.dead]
        if ctx.refused is None:
            await self.log.append(records)
            return
        try:            # a body refused as a whole keeps its 4xx: its record is best effort
            await self.log.append(records)
        except StrataError:
            ctx.dead = []


class Encode:
    name = "encode"

    def __init__(self, metrics: Instruments) -> None:
        self.metrics = metrics

    def run(self, ctx: IngestCtx) -> Reply:
        self.metrics.inc("events_accepted_total", by=len(ctx.accepted))
        self.metrics.inc("events_dead_lettered_total", by=len(ctx.dead))
        if ctx.refused is not None:
            raise ctx.refused
        if not ctx.accepted:
            raise EventsRejected(ctx.rejected)
        body = {"accepted": len(ctx.accepted), "rejected": ctx.rejected}
        return Reply(202, ctx.media, encode(body, ctx.media))


class IngestHandler:
    route = ROUTE

    def __init__(self, log: EventLog, cfg: StreamingSettings, metrics: Instruments) -> None:
        self.log = log
        self.dead_letter_topic = cfg.topics.dead_letter
        self.metrics = metrics
        self.pipeline = Pipeline([Locate(cfg.max_events, cfg.max_event_bytes), Validate(cfg),
                                  Append(log, cfg.topics.events, cfg.topics.dead_letter), Encode(metrics)])

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None,
                caller: Caller | None = None) -> Reply | Pending:
        return self.pipeline.run(IngestCtx(body, ctype, choose_response_type(accept, ctype), caller=caller))

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)

    async def dead_letter_unread(self, exc: StrataError, size: int) -> None:
        """Dead-letter a body refused before it was read (too large): its size, no bytes. Best effort."""
        try:
            await self.log.append([(self.dead_letter_topic, None, refusal_record(exc, b"", size))])
            self.metrics.inc("events_dead_lettered_total")
        except StrataError:
            pass
