"""The ingest's replay buffer after a log reset (``streaming.log_guard``): the processor's watermarks of the old
log must not trim what the new log acknowledged (the soak lost events that way: a broker that restarted without
the topic took appends, the buffer was trimmed with the old log's watermarks, then the topic was created again)."""

from __future__ import annotations

import asyncio

from strata.shared.config import load_settings
from strata.streaming.log_guard import LogGuard


def _guard() -> LogGuard:
    cfg = load_settings(streaming={"topics": {"partitions": 2}}).streaming
    return LogGuard(cfg, None, append=lambda _records: asyncio.sleep(0))


def _records(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"k", b"v%d" % i) for i in range(n)]


def test_old_watermarks_do_not_trim_what_the_new_log_acknowledged() -> None:
    async def go() -> None:
        g = _guard()
        g.acked(0, 0, _records(100))              # the old log: offsets 0..99 of partition 0
        g.buffer.trim(g.topic, g.trimmable({0: 99}))
        assert len(g.buffer) == 0                 # applied: forgotten
        g.acked(0, 0, _records(5))                # the broker restarted empty: offsets start again (a reset)
        g.acked(0, 5, _records(5))
        old = {0: 99, 1: 40}                      # the processor has not seen the new log yet
        g.buffer.trim(g.topic, g.trimmable(old))
        assert len(g.buffer) == 10                # kept: they may exist nowhere else
        g.acked(1, 0, _records(3))
        g.buffer.trim(g.topic, g.trimmable({0: 4, 1: 40}))   # partition 0 applied up to 4 in the new log
        assert len(g.buffer) == 5 + 3
        g.buffer.trim(g.topic, g.trimmable({0: 9, 1: 2}))    # both settled: trimming is normal again
        assert len(g.buffer) == 0 and not g._old_marks
    asyncio.run(go())
