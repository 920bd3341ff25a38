"""Declared request paths: small named stages run in order behind a handler protocol with no HTTP in it.

Product-mixer style: a request path is a list of stages, each one small class with one ``run(ctx)``
method and a stable ``name`` that is its metrics label. A front door (the edge's own HTTP server, an
ASGI/FastAPI app) only moves bytes: it calls ``Handler.try_now(body, ctype, accept)`` and gets a
``Reply``, or a ``Pending`` when a stage must await I/O, which it completes with
``await handler.finish(pending)``. Stages raise ``StrataError`` for bad input; the front door turns
errors into answers with ``shared.serving.error_mapper`` (the only place that does).

A stage's ``run`` returns:
- ``None``: continue with the next stage;
- ``SUSPEND``: the stage needs I/O; ``await stage.complete(ctx)`` and continue after it (no Task is
  created for requests that never suspend). Only a ``SuspendingStage`` may return it: a stage declares
  ``suspends = True`` and an ``async def complete(ctx)``, and ``Pipeline`` refuses a composition where
  the two do not go together (LitServe's habit: a bad composition fails when it is built, not when a
  request first takes that path);
- ``ANSWERED``: the answer is already known (e.g. a cache hit): go straight to the last stage;
- a ``Reply``: done (the last stage must return one).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from strata.shared.serving.metrics import Histogram

if TYPE_CHECKING:
    from strata.shared.auth.gate import Caller

SUSPEND = object()
ANSWERED = object()
# Stage latency buckets (seconds): stages take microseconds, a store read up to milliseconds.
STAGE_BUCKETS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2)


class Reply(NamedTuple):
    """One answer: status, media type of ``body``, body, extra headers (lower-case names, bytes)."""

    status: int
    media: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Stage(Protocol):
    """One step of a request path. ``name`` is its stable metrics label."""

    name: str

    def run(self, ctx: Any) -> Any: ...


class SuspendingStage(Stage, Protocol):
    """A stage whose ``run`` may return ``SUSPEND``; the pipeline then awaits ``complete(ctx)``."""

    suspends: ClassVar[bool]

    async def complete(self, ctx: Any) -> None: ...


def suspends(stage: Stage) -> bool:
    """Whether ``stage`` declared that it can suspend (``suspends = True``)."""
    return getattr(stage, "suspends", False) is True


def check_stages(stages: Sequence[Stage]) -> None:
    """Refuse a composition a request could break on: a suspending stage without ``complete``, or a
    ``complete`` on a stage that never declared it suspends (it would never be awaited)."""
    for s in stages:
        complete = getattr(s, "complete", None)
        if suspends(s) and not inspect.iscoroutinefunction(complete):
            raise TypeError(f"stage {s.name!r} declares suspends = True but has no async complete(ctx)")
        if complete is not None and not suspends(s):
            raise TypeError(f"stage {s.name!r} has complete(ctx) but does not declare suspends = True")


class Pending:
    """A request suspended at stage ``index``; ``Handler.finish`` resumes it."""

    __slots__ = ("pipeline", "ctx", "index", "t0")

    def __init__(self, pipeline: Pipeline, ctx: Any, index: int, t0: int = 0) -> None:
        self.pipeline = pipeline
        self.ctx = ctx
        self.index = index
        self.t0 = t0              # when the suspended stage started, for sampled requests (0: not sampled)


class Handler(Protocol):
    """What a front door needs of a request path. Knows nothing of sockets, headers or ASGI. ``caller`` is who
    the front door's gate admitted (``shared.auth.gate.Caller``; None with auth off): the request's tenant."""

    route: str

    def try_now(self, body: bytes, ctype: bytes | None, accept: bytes | None,
                caller: Caller | None = None) -> Reply | Pending: ...

    async def finish(self, pending: Pending) -> Reply: ...


class Pipeline:
    """Runs stages in order. Every ``sample_every``-th request is timed per stage into ``timings``."""

    __slots__ = ("stages", "names", "timings", "_last", "_n", "_mask", "_suspending")

    def __init__(self, stages: Sequence[Stage], sample_every: int = 16) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        if sample_every < 1 or sample_every & (sample_every - 1):
            raise ValueError("sample_every must be a power of two")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        check_stages(stages)
        self.stages = tuple(stages)
        self.names = tuple(names)
        self.timings = {name: Histogram(STAGE_BUCKETS_S) for name in names}
        self._last = self.stages[-1]
        self._n = 0
        self._mask = sample_every - 1
        self._suspending = frozenset(i for i, s in enumerate(self.stages) if suspends(s))

    def run(self, ctx: Any) -> Reply | Pending:
        """Run a new request from the first stage."""
        self._n += 1
        if not self._n & self._mask:
            return self._run_timed(ctx, 0)
        return self._resume(ctx, 0)

    def _resume(self, ctx: Any, start: int) -> Reply | Pending:
        stages = self.stages if start == 0 else self.stages[start:]
        for i, stage in enumerate(stages, start):
            out = stage.run(ctx)
            if out is not None:
                if out is ANSWERED:
                    return self._last.run(ctx)
                if out is SUSPEND:
                    return self._pending(ctx, i, 0)
                return out
        raise RuntimeError(f"pipeline {self.names} ended without a reply")

    def _run_timed(self, ctx: Any, start: int) -> Reply | Pending:
        clock = time.perf_counter_ns
        for i in range(start, len(self.stages)):
            stage = self.stages[i]
            t0 = clock()
            out = stage.run(ctx)
            if out is SUSPEND:        # timed when its I/O completes (run + wait + complete, one sample)
                return self._pending(ctx, i, t0)
            self.timings[stage.name].observe((clock() - t0) / 1e9)
            if out is not None:
                if out is ANSWERED:
                    t0 = clock()
                    out = self._last.run(ctx)
                    self.timings[self._last.name].observe((clock() - t0) / 1e9)
                return out
        raise RuntimeError(f"pipeline {self.names} ended without a reply")

    def _pending(self, ctx: Any, index: int, t0: int) -> Pending:
        if index not in self._suspending:
            raise RuntimeError(f"stage {self.names[index]!r} returned SUSPEND but does not declare suspends = True")
        return Pending(self, ctx, index, t0)

    async def finish(self, pending: Pending) -> Reply:
        """Await the suspended stage's I/O, then run the rest of the stages."""
        stage: SuspendingStage = self.stages[pending.index]     # type: ignore[assignment]  (checked by _pending)
        await stage.complete(pending.ctx)
        if pending.t0:
            self.timings[stage.name].observe((time.perf_counter_ns() - pending.t0) / 1e9)
            out = self._run_timed(pending.ctx, pending.index + 1)
        else:
            out = self._resume(pending.ctx, pending.index + 1)
        if isinstance(out, Pending):            # a later stage suspended too
            return await self.finish(out)
        return out
