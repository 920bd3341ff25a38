"""The ingest's log guard stops even when a cancellation is swallowed on the way (CI hung in
tests/integration/test_user_erasure.py: the guard's watcher was left 'cancelling' at its sleep, and ``stop``
waited for it for good)."""

from __future__ import annotations

import asyncio

from strata.shared.config import load_settings
from strata.streaming.log_guard import LogGuard


async def _append(records: list) -> None:
    return None


def test_stop_ends_a_watcher_that_swallowed_one_cancellation() -> None:
    async def go() -> None:
        g = LogGuard(load_settings(streaming={"store": "none"}).streaming, None, _append)
        swallowed = []

        async def stubborn() -> None:            # what a library that loses one CancelledError does
            while True:
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed.append(1)

        g._watcher = asyncio.create_task(stubborn())
        await asyncio.sleep(0.01)
        await asyncio.wait_for(g.stop(), 5.0)
        assert g._watcher.done() and swallowed == [1]

    asyncio.run(go())
