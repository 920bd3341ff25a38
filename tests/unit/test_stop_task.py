"""``stop_task``: a background task whose first cancellation is lost inside a client library (as redis-py's and
aiokafka's use of ``asyncio.wait_for`` can in Python 3.11) still stops; one that never stops is left behind
with a warning instead of hanging the shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from strata.shared.serving.tasks import stop_task


async def _swallows_first_cancel(log: list[str]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        log.append("swallowed")      # what a library that converts the cancel into its own error does
    await asyncio.sleep(3600)        # the loop goes on: "cancelling", yet waiting


def test_a_lost_cancel_does_not_hang_the_stop() -> None:
    async def go() -> list[str]:
        log: list[str] = []
        task = asyncio.create_task(_swallows_first_cancel(log))
        await asyncio.sleep(0)
        task.cancel()                                        # what stop() did before: one cancel, then wait
        done, _ = await asyncio.wait({task}, timeout=0.3)
        assert not done                                      # ... for good
        await asyncio.wait_for(stop_task(task, wait_s=0.05), 5)
        assert task.cancelled()
        return log

    assert asyncio.run(go()) == ["swallowed"]


def test_a_task_that_never_stops_is_left_behind_with_a_warning(caplog) -> None:
    release = False

    async def stubborn() -> None:
        while not release:
            with contextlib.suppress(asyncio.CancelledError):      # every cancel swallowed
                await asyncio.sleep(0.01)

    async def go() -> bool:
        nonlocal release
        task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        await asyncio.wait_for(stop_task(task, wait_s=0.02, give_up_s=0.2), 5)
        left = not task.done()
        release = True              # (so that the test's own loop can end)
        await task
        return left

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(go()) is True
    assert "stubborn did not stop" in caplog.text


def test_a_finished_or_missing_task_is_fine() -> None:
    async def boom() -> None:
        raise RuntimeError("ended badly")

    async def go() -> None:
        await stop_task(None)
        task = asyncio.create_task(boom())
        await asyncio.sleep(0)
        await stop_task(task)        # its error is retrieved, not raised: it is being stopped

    asyncio.run(go())
