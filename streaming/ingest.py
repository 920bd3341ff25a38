"""``POST /v1/events`` as a declared pipeline behind the ``shared.serving.pipeline.Handler`` protocol.

    decode -> envelope -> validate -> append -> encode

One event or ``{"events": [...]}`` (up to ``max_events``), JSON or msgpack. Each event is checked by the
one validator (``shared.contracts.api.parse_event``); valid ones go to the events topic keyed by session,
invalid ones (raw, with index, field and reason) to the dead-letter topic, all acknowledged by the log
(acks=all) before the answer: 202 ``{"accepted": n, "rejected": [{"index", "field", "reason"}]}``, or 422
with the same list when nothing was valid. A log that does not acknowledge -> 503 + Retry-After, and
nothing is claimed accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from strata.shared.auth.gate import Caller, bind_tenant
from strata.shared.config import StreamingSettings
from strata.shared.contracts.api import parse_event
from strata.shared.contracts.event_records import encode_event, event_key
from strata.shared.errors import InvalidField, MalformedBody, PayloadTooLarge, StrataError
from strata.shared.serving.codecs import choose_response_type, decode, encode
from strata.shared.serving.metrics import Instruments
from strata.shared.serving.pipeline import SUSPEND, Pending, Pipeline, Reply
from strata.streaming.errors import EventsRejected
from strata.streaming.log import EventLog

ROUTE = "/v1/events"


@dataclass(slots=True)
class IngestCtx:
    body: bytes
    ctype: bytes | None
    media: str
    obj: object = None
    raw: list = field(default_factory=list)
    accepted: list = field(default_factory=list)     # (key, value) per valid event
    rejected: list = field(default_factory=list)     # {"index", "field", "reason"}
    dead: list = field(default_factory=list)         # dead-letter record values
    caller: Caller | None = None                     # who the gate admitted (None: auth off): the tenant


class Decode:
    name = "decode"

    def run(self, ctx: IngestCtx) -> None:
        ctx.obj = decode(ctx.body, ctx.ctype)


class Envelope:
    name = "envelope"

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events

    def run(self, ctx: IngestCtx) -> None:
        obj = ctx.obj
        if type(obj) is dict and "events" in obj:
            if len(obj) != 1:
                raise InvalidField(f"a batch has only 'events'; unknown field(s) {sorted(obj.keys() - {'events'})}",
                                   field="body")
            events = obj["events"]
            if type(events) is not list:
                raise InvalidField(f"must be a list of events, got {type(events).__name__}", field="events")
            if not events:
                raise InvalidField("must hold at least one event", field="events")
            if len(events) > self.max_events:
                raise PayloadTooLarge(f"at most {self.max_events} events per request, got {len(events)}",
                                      field="events")
            ctx.raw = events
        elif type(obj) is dict:
            ctx.raw = [obj]
        else:
            raise MalformedBody(f"body must be an event object or {{\"events\": [...]}}, got {type(obj).__name__}",
                                field="body")


class Validate:
    name = "validate"

    def run(self, ctx: IngestCtx) -> None:
        now_ms = int(time.time() * 1000)
        caller = ctx.caller
        for i, raw in enumerate(ctx.raw):
            if caller is not None:
                bind_tenant(raw, caller)            # an event naming another tenant refuses the request (403)
            try:
                ev = parse_event(raw)
            except StrataError as exc:
                rej = {"index": i, "field": exc.field, "reason": exc.reason}
                ctx.rejected.append(rej)
                ctx.dead.append(orjson.dumps({**rej, "code": exc.code, "received_ms": now_ms, "raw": raw},
                                             default=repr, option=orjson.OPT_NON_STR_KEYS))
                continue
            ctx.accepted.append((event_key(ev.tenant, ev.session_id), encode_event(ev.to_dict())))


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
        await self.log.append(records)


class Encode:
    name = "encode"

    def __init__(self, metrics: Instruments) -> None:
        self.metrics = metrics

    def run(self, ctx: IngestCtx) -> Reply:
        self.metrics.inc("events_accepted_total", by=len(ctx.accepted))
        self.metrics.inc("events_dead_lettered_total", by=len(ctx.dead))
        if not ctx.accepted:
            raise EventsRejected(ctx.rejected)
        body = {"accepted": len(ctx.accepted), "rejected": ctx.rejected}
        return Reply(202, ctx.media, encode(body, ctx.media))


class IngestHandler:
    route = ROUTE

    def __init__(self, log: EventLog, cfg: StreamingSettings, metrics: Instruments) -> None:
        self.pipeline = Pipeline([Decode(), Envelope(cfg.max_events), Validate(),
                                  Append(log, cfg.topics.events, cfg.topics.dead_letter), Encode(metrics)])

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None,
                caller: Caller | None = None) -> Reply | Pending:
        return self.pipeline.run(IngestCtx(body, ctype, choose_response_type(accept, ctype), caller=caller))

    async def finish(self, pending: Pending) -> Reply:
        return await self.pipeline.finish(pending)
