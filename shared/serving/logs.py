"""Structured JSON logging, configured once at each entry point."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable

import orjson

# record attributes that are not extra= fields; uvicorn adds color_message (its message with ANSI colours)
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    _second = -1
    _ts = ""

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:          # the timestamp string once per second (hot paths log per request)
            self._second = second
            self._ts = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(created))
        return self._ts

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.stamp(record.created), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STD:
                out[k] = v  # extra= fields such as request_id, tenant
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class BatchingHandler(logging.StreamHandler):
    """A stream handler that writes the lines an event loop's thread logs below WARNING together, at most
    ``FLUSH_S`` after the first of them (or once ``MAX_LINES`` wait), instead of a write (a system call) each: hot
    paths log per request (the router a line per escalation; at 4 connections that write was ~12 us of the edge's
    CPU per escalated request on a 2-core VM, 2026-12-07). WARNING and above, and lines from a thread without a
    running loop, are written at once, after what waits (order kept); ``flush`` (``logging.shutdown`` at exit)
    writes what waits. A process killed outright loses at most ``FLUSH_S`` of INFO lines."""

    FLUSH_S = 0.05
    MAX_LINES = 256

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None     # the loop whose timer writes what waits
        self._thread = 0                                        # ... and the thread it runs on

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record), record.levelno)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def add(self, line: str, level: int) -> None:
        """A formatted line (the caller holds the lock)."""
        lines = self._lines
        lines.append(line)
        if level < logging.WARNING and len(lines) < self.MAX_LINES:
            timed = self._loop
            if timed is not None and self._thread == threading.get_ident() and timed.is_running():
                return                      # the timed loop's own thread: its write is already timed
            if timed is None or timed.is_closed():      # (a loop that closed before its timer fired)
                loop = _running_loop()      # (a getpid system call on Python 3.11: once per interval, not per line)
                if loop is not None:
                    self._loop, self._thread = loop, threading.get_ident()
                    loop.call_later(self.FLUSH_S, self._timed)
                    return
        self._write()                       # a warning, a full buffer, no loop, or another thread: now

    def _timed(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it
            self._loop = None
            self._write()

    def _write(self) -> None:
        lines = self._lines
        if lines:
            self._lines = []
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._lines:
                self._write()
            else:
                super().flush()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_HANDLER: BatchingHandler | None = None     # configure_logging's handler, when it formats JSON


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict) -> None:
    """``logger.log(level, msg, extra=fields)``: the same JSON line, written straight to ``configure_logging``'s
    handler when nothing else would see the record (no other handler or filter between ``logger`` and the root),
    without the logging module's record object, filters and the formatter's walk over its attributes (in-process
    ~3 us a line instead of ~7; the router writes one per escalated request); otherwise exactly that call."""
    if not logger.isEnabledFor(level):
        return
    h = _HANDLER
    if h is None or level < h.level or not _only(logger, h):
        logger.log(level, msg, extra=fields)
        return
    formatter = h.formatter
    assert isinstance(formatter, JsonFormatter)     # _HANDLER is set only with it
    line = orjson.dumps({"ts": formatter.stamp(time.time()), "level": logging.getLevelName(level),
                         "logger": logger.name, "msg": msg, **fields}, default=str).decode()
    with h.lock:  # type: ignore[union-attr]  # Handler.createLock made it
        h.add(line, level)


def _only(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether ``handler`` (on the root, with no filter of its own but the repeat filter) is the one place a
    record of ``logger`` goes."""
    c: logging.Logger | None = logger
    while c is not None:
        if c.filters or c.disabled:
            return False
        if c.handlers:
            if len(c.handlers) != 1 or c.handlers[0] is not handler or c.parent is not None:
                return False
            for f in handler.filters:
                if type(f) is not RepeatFilter or logger.name.startswith(f.prefixes):
                    return False
            return True
        if not c.propagate:
            return False
        c = c.parent
    return False


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
    global _HANDLER
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())       # passes every logger but aiokafka's as it is (log_fields relies on it)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _HANDLER = handler if json else None
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
