"""``shared.serving.logs``: the JSON lines every process writes. ``BatchingHandler`` writes what an event loop's
thread logs below WARNING together (one write, at most ``FLUSH_S`` later), warnings and loop-less lines at once
and in order, and everything waiting at ``flush``; ``log_fields`` writes exactly the line ``logger.log`` would,
and falls back to it whenever another handler or a filter would see the record."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

import orjson
import pytest

from strata.shared.serving import logs


class Stream(io.StringIO):
    """Counts its writes (each a system call on a real stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch):
    """configure_logging's handler on a counting stream; the root logger's handlers and level put back after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._HANDLER
    s = Stream()
    monkeypatch.setattr(sys, "stderr", s)
    logs.configure_logging("INFO")
    yield s
    root.handlers[:], _, logs._HANDLER = saved
    root.setLevel(saved[1])


def _lines(s: Stream) -> list[dict]:
    return [orjson.loads(x) for x in s.getvalue().splitlines()]


def test_lines_logged_on_a_loop_are_written_together_after_the_interval(stream: Stream) -> None:
    log = logging.getLogger("strata.test.batch")

    async def main() -> tuple[int, int]:
        for i in range(5):
            log.info("line", extra={"i": i})
        before = stream.writes                          # nothing written yet
        await asyncio.sleep(logs.BatchingHandler.FLUSH_S + 0.05)
        return before, stream.writes

    before, after = asyncio.run(main())
    assert (before, after) == (0, 1)
    assert [x["i"] for x in _lines(stream)] == [0, 1, 2, 3, 4]


def test_a_warning_is_written_at_once_after_what_waits(stream: Stream) -> None:
    log = logging.getLogger("strata.test.batch")

    async def main() -> int:
        log.info("first")
        log.warning("second")
        return stream.writes

    assert asyncio.run(main()) == 1
    assert [x["msg"] for x in _lines(stream)] == ["first", "second"]


def test_lines_without_a_loop_are_written_at_once_and_flush_writes_what_waits(stream: Stream) -> None:
    log = logging.getLogger("strata.test.batch")
    log.info("no loop")
    assert stream.writes == 1
    handler = logs._HANDLER
    assert handler is not None

    async def main() -> None:
        log.info("waiting")

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())                    # the loop stops before its timer fires
    assert [x["msg"] for x in _lines(stream)] == ["no loop"]
    handler.flush()                                    # logging.shutdown does this at exit
    loop.close()
    assert [x["msg"] for x in _lines(stream)] == ["no loop", "waiting"]
    asyncio.run(main())                                # a new loop after a closed one still batches
    assert [x["msg"] for x in _lines(stream)] == ["no loop", "waiting"]
    handler.flush()
    assert [x["msg"] for x in _lines(stream)] == ["no loop", "waiting", "waiting"]


def test_a_full_buffer_is_written_at_once(stream: Stream) -> None:
    log = logging.getLogger("strata.test.batch")
    n = logs.BatchingHandler.MAX_LINES

    async def main() -> int:
        for i in range(n):
            log.info("line", extra={"i": i})
        return stream.writes

    assert asyncio.run(main()) == 1 and len(_lines(stream)) == n


def test_log_fields_writes_the_line_logger_log_writes(stream: Stream) -> None:
    log = logging.getLogger("strata.shared.router.router")
    fields = {"request_id": "r1", "traceparent": None, "target": "origin", "endpoint": "http://h:1", "ms": 0.25}
    log.log(logging.INFO, "escalation", extra=fields)
    logs.log_fields(log, logging.INFO, "escalation", fields)
    logs.log_fields(log, logging.DEBUG, "escalation", fields)     # below the level: nothing
    a, b = stream.getvalue().splitlines()
    assert a == b and orjson.loads(a)["target"] == "origin"


def test_log_fields_falls_back_when_another_handler_or_filter_would_see_the_record(stream: Stream) -> None:
    log = logging.getLogger("strata.test.fields")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    extra = Keep()
    logging.getLogger().addHandler(extra)               # as pytest's caplog does
    try:
        logs.log_fields(log, logging.INFO, "hello", {"a": 1})
    finally:
        logging.getLogger().removeHandler(extra)
    assert [r.a for r in seen] == [1]                   # type: ignore[attr-defined]
    dropped = logging.Filter("strata.elsewhere")        # passes only that logger's records
    log.addFilter(dropped)
    try:
        logs.log_fields(log, logging.INFO, "filtered out", {})
    finally:
        log.removeFilter(dropped)
    assert [x["msg"] for x in _lines(stream)] == ["hello"]
