"""Structured JSON logging, configured once at each entry point."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson

# record attributes that are not extra= fields; uvicorn adds color_message (its message with ANSI colours)
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    _second = -1
    _ts = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:          # the timestamp string once per second (hot paths log per request)
            self._second, self._ts = second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        out = {"ts": self._ts, "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STD:
                out[k] = v  # extra= fields such as request_id, tenant
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class RepeatFilter(logging.Filter):
    """Passes each message of the named libraries once per ``window_s``; the next one after the window
    carries ``suppressed``, how many were dropped. aiokafka logs every failed connect to a broker that is
    down at ERROR, several a second; our own code logs one line per retry instead."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple, list] = {}      # (logger, level, format string) -> [passed at, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.suppressed = seen[1]
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = [now, 0]
        return True


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    # What no line of ours shows is not collected either (the logging HOWTO's "Optimization"): the caller's file
    # and line (a walk up the stack per record), thread, process and task names. The router logs one line per
    # escalated request: this took it from about 13 to 10 microseconds.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
