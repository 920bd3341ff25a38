"""``shared.serving.logs.RepeatFilter``: a library's repeated message passes once per window, the next one
after it says how many were dropped; other loggers are never filtered."""

from __future__ import annotations

import logging

from strata.shared.serving.logs import RepeatFilter


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_repeated_library_message_passes_once_per_window() -> None:
    now = [0.0]
    f = RepeatFilter(("aiokafka",), window_s=60.0, clock=lambda: now[0])
    msg = 'Unable connect to "%s": %s'
    passed = [f.filter(_record("aiokafka", msg, "127.0.0.1:1", f"refused {i}")) for i in range(5)]
    assert passed == [True, False, False, False, False]
    assert f.filter(_record("aiokafka.conn", msg, "x", "y"))          # another logger: its own count
    assert f.filter(_record("aiokafka", "Unable to update metadata"))  # another message: its own count
    now[0] = 60.0
    after = _record("aiokafka", msg, "127.0.0.1:1", "refused 5")
    assert f.filter(after) and after.suppressed == 4
    assert not f.filter(_record("aiokafka", msg, "127.0.0.1:1", "refused 6"))


def test_other_loggers_are_never_filtered() -> None:
    f = RepeatFilter(("aiokafka",), window_s=60.0, clock=lambda: 0.0)
    assert all(f.filter(_record("strata.streaming.log", "broker down")) for _ in range(5))
