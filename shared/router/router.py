"""The router: the ``UpstreamClient`` the kernel's ``Escalate`` stage asks (``shared.ranking.stages.escalate``).

Per upper tier (``streaming``, ``origin``: the ``router`` config section's URL lists) a set of endpoints
picked by power of two choices (``endpoint``), a breaker per endpoint (``breaker``), a deadline
(``router.deadline_ms``; ``explain`` requests get the explain deadline and go to the origin's
``/v1/explain``), and one admission window over all of them (``admission``: ``max_escalation_share``).

``admit`` decides at once and never waits: the tier is not configured (this tier's answer is the answer),
the budget is spent (``escalation_budget``) or every endpoint's breaker is open (``<tier>_unavailable``).
``ask`` sends the request (msgpack; the client's msgpack body as is, otherwise re-encoded) with
``X-Request-ID`` and a child ``traceparent``, and returns the answer after this tier's guardrails checked it
again (``guard``), or raises ``EscalationFailed`` with ``<tier>_timeout`` / ``<tier>_unavailable`` /
``<tier>_error``. Every escalation is one JSON log line (request id, traceparent, target, endpoint, outcome,
milliseconds), so a request id is found in this tier's log and in the upper tier's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import msgpack

from strata.shared.config import RouterSettings
from strata.shared.contracts.api import TIERS
from strata.shared.ranking.stages.ctx import RankCtx, TierCtx, Upstream
from strata.shared.ranking.stages.escalate import EscalationFailed
from strata.shared.router.admission import AdmissionWindow
from strata.shared.router.breaker import Breaker
from strata.shared.router.endpoint import Endpoint, pick
from strata.shared.router.guard import recheck
from strata.shared.router.http import UpstreamError, UpstreamTimeout
from strata.shared.router.metrics import RouterMetrics
from strata.shared.serving.answers import RequestIds
from strata.shared.serving.codecs import _MSGPACK_TYPES, media_type
from strata.shared.serving.logs import log_fields
from strata.shared.serving.trace import TRACE, child_traceparent

logger = logging.getLogger(__name__)
NOT_CONFIGURED = ""                 # admit's refusal when the tier has no URLs: no reason, not degraded
BUDGET = "escalation_budget"
RECOMMEND, EXPLAIN = b"/v1/recommend", b"/v1/explain"


class Target:
    """One upper tier: its endpoints and deadlines."""

    __slots__ = ("name", "endpoints", "deadline_s", "explain_deadline_s")

    def __init__(self, name: str, endpoints: list[Endpoint], deadline_s: float, explain_deadline_s: float) -> None:
        self.name = name
        self.endpoints = endpoints
        self.deadline_s = deadline_s
        self.explain_deadline_s = explain_deadline_s


class Router:
    def __init__(self, cfg: RouterSettings, *, tier: str = "edge", seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Upper tiers of ``tier`` only (tier 2 escalates to the origin, never to itself)."""
        above = TIERS[TIERS.index(tier) + 1:]
        d = cfg.deadline_ms
        urls = {"streaming": cfg.streaming_urls, "origin": cfg.origin_urls}
        self.targets: dict[str, Target] = {}
        for name in above:
            if urls[name]:
                eps = [Endpoint(u, Breaker(cfg.breaker.failures, cfg.breaker.open_s, clock)) for u in urls[name]]
                deadline = d.streaming if name == "streaming" else d.origin
                self.targets[name] = Target(name, eps, deadline / 1000, d.explain / 1000)
        self.window = AdmissionWindow(cfg.max_escalation_share, clock=clock)
        self.rng = random.Random(seed)
        self.ids = RequestIds()
        self.metrics = RouterMetrics({t.name: [(e.url, _is_open(e)) for e in t.endpoints]
                                      for t in self.targets.values()}, self.window.share)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None    # the running loop it serves (one at a time)

    @property
    def configured(self) -> bool:
        return bool(self.targets)

    # -- UpstreamClient ------------------------------------------------------------------------------
    def seen(self) -> None:
        """A request this tier answers itself (confident): the admission window's denominator."""
        self.window.observe()

    def admit(self, target: str, ctx: RankCtx) -> tuple[str | None, float]:
        t = self.targets.get(target)
        if t is None:
            self.window.observe()
            return NOT_CONFIGURED, 0.0
        if not any(e.breaker.allow() for e in t.endpoints):
            self.window.observe()
            self.metrics.outcome(target, "breaker_open")
            self._log(ctx, target, None, "breaker_open", 0.0)
            return f"{target}_unavailable", 0.0
        if not self.window.admit():
            self.metrics.outcome(target, "budget")
            return BUDGET, 0.0
        trace = TRACE.get()
        if trace is None:
            ctx.request_id = self.ids.next()
            ctx.traceparent = child_traceparent(None)
        else:
            ctx.request_id = trace.request_id or self.ids.next()
            ctx.traceparent = child_traceparent(trace.traceparent)
        return None, t.explain_deadline_s if ctx.req.explain else t.deadline_s

    async def ask(self, target: str, ctx: RankCtx) -> Upstream:
        t = self.targets[target]
        ep = pick(t.endpoints, self.rng)
        if ep is None:                       # every breaker opened since admit
            self.metrics.outcome(target, "breaker_open")
            self._log(ctx, target, None, "breaker_open", 0.0)
            raise EscalationFailed(f"{target}_unavailable")
        ep.breaker.started()
        ep.outstanding += 1
        loop = self._loop
        if loop is None or not loop.is_running():      # the loop this router serves (asyncio.get_running_loop is a
            loop = self._loop = asyncio.get_running_loop()     # getpid system call each on Python 3.11)
        t0 = time.perf_counter_ns()
        deadline_ns, request_id, traceparent = ctx.deadline_ns, ctx.request_id, ctx.traceparent
        assert deadline_ns is not None and request_id is not None and traceparent is not None   # admit set them
        deadline = loop.time() + (deadline_ns - t0) / 1e9
        headers = b"".join((b"x-request-id: ", request_id.encode(), b"\r\ntraceparent: ",
                            traceparent.encode(), b"\r\n"))
        if ctx.caller is not None:           # auth on: the upper tier admits the caller's own key (same tenant,
            headers += b"authorization: Bearer " + ctx.caller.token + b"\r\n"    # same scopes, same limits)
        try:
            status, payload = await ep.pool.post(EXPLAIN if ctx.req.explain else RECOMMEND, _request_body(ctx),
                                                 headers, deadline, loop)
        except UpstreamTimeout:
            ep.outstanding -= 1
            self._failed(ep, ctx, target, "timeout", t0)
            raise EscalationFailed(f"{target}_timeout") from None
        except (UpstreamError, OSError) as exc:
            ep.outstanding -= 1
            self._failed(ep, ctx, target, "error", t0, str(exc))
            raise EscalationFailed(f"{target}_unavailable") from None
        ep.outstanding -= 1
        seconds = (time.perf_counter_ns() - t0) / 1e9
        body = _answer(status, payload)
        if body is None:
            self._failed(ep, ctx, target, "error", t0, f"HTTP {status}, {len(payload)} bytes")
            raise EscalationFailed(f"{target}_error")
        ep.breaker.succeeded()
        ep.observe(seconds)
        tier = body.get("tier")
        up, removed = recheck(ctx, Upstream(tier if tier in TIERS else target, body, body.get("degraded") is True))
        if removed:
            self.metrics.removed(target, removed)
        if up is None:
            self.metrics.outcome(target, "guardrails")
            self._log(ctx, target, ep.url, "guardrails", seconds)
            raise EscalationFailed(f"{target}_error")
        self.metrics.outcome(target, "answered")
        self.metrics.latency[target].observe(seconds)
        self._log(ctx, target, ep.url, "answered", seconds)
        return up

    def fetch(self, target: str, ctx: TierCtx, remember: Callable[[TierCtx, Upstream], None] | None) -> None:
        """``mode: background``: ask in the background; the answer is remembered for the session's next request."""
        task = asyncio.get_running_loop().create_task(self._fetch(target, ctx, remember))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, target: str, ctx: TierCtx, remember: Callable[[TierCtx, Upstream], None] | None) -> None:
        try:
            up = await self.ask(target, ctx)
        except EscalationFailed:
            return                              # counted and logged by ask; the next request tries again
        if remember is not None:
            remember(ctx, up)

    def served_cached(self, target: str) -> None:
        """A cached answer of ``target`` served again (no upstream call; the window's denominator)."""
        self.window.observe()
        self.metrics.outcome(target, "cached")

    def passed_on_degraded(self, target: str) -> None:
        """An answer of ``target`` (asked now or served again) left this tier with ``degraded: true``."""
        self.metrics.degraded(target)

    # -- failures, logs ------------------------------------------------------------------------------
    def _failed(self, ep: Endpoint, ctx: RankCtx, target: str, outcome: str, t0: int, detail: str = "") -> None:
        seconds = (time.perf_counter_ns() - t0) / 1e9
        was_open = ep.breaker.is_open
        ep.breaker.failed()
        ep.observe(seconds)
        self.metrics.outcome(target, outcome)
        self._log(ctx, target, ep.url, outcome, seconds, detail, logging.WARNING)
        if ep.breaker.is_open and not was_open:
            logger.warning("circuit breaker opened", extra={"target": target, "endpoint": ep.url,
                                                            "open_s": ep.breaker.open_s})

    def _log(self, ctx: RankCtx, target: str, endpoint: str | None, outcome: str, seconds: float,
             detail: str = "", level: int = logging.INFO) -> None:
        if not logger.isEnabledFor(level):
            return
        extra = {"request_id": ctx.request_id, "traceparent": ctx.traceparent, "target": target,
                 "endpoint": endpoint, "outcome": outcome, "ms": round(seconds * 1000, 3)}
        if detail:
            extra["detail"] = detail
        log_fields(logger, level, "escalation", extra)

    # -- lifecycle, ops ------------------------------------------------------------------------------
    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        for t in self.targets.values():
            for e in t.endpoints:
                e.pool.close()

    def exposition(self) -> bytes:
        return self.metrics.exposition()


def _is_open(ep: Endpoint) -> Callable[[], bool]:
    return lambda: ep.breaker.is_open


def _request_body(ctx: RankCtx) -> bytes:
    """The client's msgpack body as it came; any other body re-encoded from its decoded form (the origin reads
    the same fields: its contract is this one plus optional ones)."""
    if media_type(ctx.ctype) in _MSGPACK_TYPES:
        return ctx.body
    return msgpack.packb(ctx.obj, use_bin_type=True)


def _answer(status: int, payload: bytes) -> dict | None:
    """A usable answer: 200, a msgpack map with a non-empty list of items that each name an item id."""
    if status != 200:
        return None
    try:
        body = msgpack.unpackb(payload, raw=False)
    except Exception:        # msgpack raises several unrelated types
        return None
    if type(body) is not dict:
        return None
    items = body.get("items")
    if type(items) is not list or not items:
        return None
    for it in items:
        if type(it) is not dict or type(it.get("item_id")) is not str:
            return None
    return body
