"""Stopping background tasks without hanging a shutdown.

A cancellation can be lost inside a client library: in Python 3.11 ``asyncio.wait_for`` swallows a cancel that
arrives as its inner call completes, and redis-py and aiokafka both use it (seen in CI: a store watcher left
"cancelling" at its next ``sleep``, and its service's ``stop`` waited for good). ``stop_task`` cancels again
until the task ends, and after ``give_up_s`` leaves it behind with a warning instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task | None, wait_s: float = 1.0, give_up_s: float = 10.0) -> None:
    """Cancel ``task`` and wait until it ended, cancelling it again every ``wait_s``; its outcome is retrieved
    (an exception it ended with is not raised here: it is being stopped)."""
    if task is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_s
    while not task.done():
        if loop.time() >= deadline:
            logger.warning("task %s did not stop within %.0f s of its cancel; left behind", task.get_name(), give_up_s)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=wait_s)
    if not task.cancelled():
        task.exception()        # retrieved: no "exception was never retrieved" at exit
