"""shared.serving.pipeline: stages run in order; SUSPEND/finish, ANSWERED, sampled stage timings, bad declarations."""

from __future__ import annotations

import asyncio

import pytest

from strata.shared.serving.pipeline import ANSWERED, SUSPEND, Pending, Pipeline, Reply


class Ctx:
    def __init__(self) -> None:
        self.trace: list[str] = []


class Step:
    def __init__(self, name: str, out: object = None) -> None:
        self.name = name
        self.out = out

    def run(self, ctx: Ctx) -> object:
        ctx.trace.append(self.name)
        return self.out


class Io(Step):
    suspends = True

    async def complete(self, ctx: Ctx) -> None:
        await asyncio.sleep(0)
        ctx.trace.append(f"{self.name}:done")


class Last(Step):
    def run(self, ctx: Ctx) -> Reply:
        ctx.trace.append(self.name)
        return Reply(200, "text/plain", ",".join(ctx.trace).encode())


def test_stages_run_in_order_and_the_last_replies() -> None:
    p = Pipeline([Step("a"), Step("b"), Last("z")])
    out = p.run(Ctx())
    assert out == Reply(200, "text/plain", b"a,b,z")


def test_answered_skips_to_the_last_stage() -> None:
    p = Pipeline([Step("a", ANSWERED), Step("b"), Last("z")])
    assert p.run(Ctx()).body == b"a,z"


def test_suspend_returns_pending_and_finish_resumes_after_the_stage() -> None:
    p = Pipeline([Step("a"), Io("io", SUSPEND), Step("b"), Last("z")])
    ctx = Ctx()
    out = p.run(ctx)
    assert isinstance(out, Pending) and out.index == 1 and ctx.trace == ["a", "io"]
    reply = asyncio.run(p.finish(out))
    assert reply.body == b"a,io,io:done,b,z"


def test_two_suspensions_in_one_request() -> None:
    p = Pipeline([Io("x", SUSPEND), Io("y", SUSPEND), Last("z")])
    out = p.run(Ctx())
    assert asyncio.run(p.finish(out)).body == b"x,x:done,y,y:done,z"


def test_a_stage_error_propagates_to_the_caller() -> None:
    class Boom(Step):
        def run(self, ctx: Ctx) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Pipeline([Boom("a"), Last("z")]).run(Ctx())


def test_a_pipeline_without_a_reply_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="ended without a reply"):
        Pipeline([Step("a")]).run(Ctx())


def test_stage_timings_are_sampled_by_stage_name() -> None:
    p = Pipeline([Step("a"), Io("io", SUSPEND), Last("z")], sample_every=2)
    for _ in range(8):
        out = p.run(Ctx())
        asyncio.run(p.finish(out))
    # every 2nd request is timed in all its stages, the I/O wait included (also across the suspension)
    assert p.timings["a"].n == 4
    assert p.timings["io"].n == 4         # run() + the wait + complete(): one sample per request
    assert p.timings["z"].n == 4


@pytest.mark.parametrize(("stages", "every", "message"), [
    ([], 16, "at least one stage"),
    ([Step("a"), Step("a")], 16, "unique"),
    ([Step("a")], 3, "power of two"),
])
def test_bad_declarations_are_refused(stages: list, every: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pipeline(stages, sample_every=every)


class NoComplete(Step):
    suspends = True


class Undeclared(Step):
    async def complete(self, ctx: Ctx) -> None:
        return None


class SyncComplete(Step):
    suspends = True

    def complete(self, ctx: Ctx) -> None:
        return None


@pytest.mark.parametrize(("stage", "message"), [
    (NoComplete("s", SUSPEND), "declares suspends = True but has no async complete"),
    (SyncComplete("s", SUSPEND), "declares suspends = True but has no async complete"),
    (Undeclared("s"), "has complete\\(ctx\\) but does not declare suspends = True"),
])
def test_a_suspending_stage_must_declare_itself_and_complete(stage: Step, message: str) -> None:
    """Refused when the pipeline is built, not when a request first suspends there."""
    with pytest.raises(TypeError, match=message):
        Pipeline([Step("a"), stage, Last("z")])


def test_suspend_from_a_stage_that_never_declared_it_is_a_bug() -> None:
    p = Pipeline([Step("a", SUSPEND), Last("z")])
    with pytest.raises(RuntimeError, match="returned SUSPEND but does not declare suspends"):
        p.run(Ctx())
