"""Fairness between connections (``FlowControl``, mixed into ``shared.serving.http.connection.EdgeHTTP``): input is
parsed ``FEED_SLICE`` bytes at a time and stops while ``MAX_PIPELINE`` parsed requests wait (what was read
and not parsed waits in ``backlog``, reading paused); a connection's pipelined requests are answered
inline ``PIPELINE_TURN`` at a time before the others get a turn (``_next_turn``); a client that does not
read its answers (the transport pauses our writing) is not read from either. Bounds: ``shared.serving.http.limits``.
"""

from __future__ import annotations

import httptools

from strata.shared.errors import MalformedHttp
from strata.shared.serving.http.limits import FEED_SLICE, MAX_HEADER_BYTES, MAX_PIPELINE
from strata.shared.serving.http.phase import BODY, CLOSING, HEADERS
from strata.shared.serving.http.state import ConnectionState


class FlowControl(ConnectionState):
    __slots__ = ()

    def pause_writing(self) -> None:       # slow reader: stop reading its requests too
        self._pause()

    def resume_writing(self) -> None:
        self._resume()

    def _pause(self) -> None:
        if not self.paused and self.phase is not CLOSING:
            self.paused = True
            self.transport.pause_reading()   # no deadline runs while paused (see expire)

    def _resume(self) -> None:
        if self.paused and self.phase is not CLOSING:
            self.paused = False
            self.transport.resume_reading()
            self.since = self.loop.time()   # the client could not send while we did not read

    def _feed(self, data: bytes) -> None:
        """Parse ``data`` at most ``FEED_SLICE`` bytes at a time, and stop while ``MAX_PIPELINE`` requests
        wait: one client's big read of pipelined requests never becomes one long callback that holds
        every other connection. What is not parsed waits in ``backlog`` (reading is paused meanwhile)."""
        pos, n = 0, len(data)
        while pos < n:
            piece = data if n <= FEED_SLICE else data[pos:pos + FEED_SLICE]
            pos += len(piece)
            open_before = self.phase is HEADERS or self.phase is BODY
            self.began = False
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self._upgrade()
                return
            except httptools.HttpParserError as exc:
                self._fail(MalformedHttp(f"malformed HTTP request: {exc}", field="http"))
                return
            phase = self.phase
            if phase is CLOSING or self.parser is None:
                return
            if open_before and not self.began and (phase is HEADERS or phase is BODY):
                # Raw bytes of a message still open after another slice. The slice a message began in
                # is not counted (it may also hold earlier requests): a limit trips at most 8 KiB late.
                self.raw_bytes += len(piece)
                if self.raw_bytes > self.server.max_raw or (phase is HEADERS and self.raw_bytes > MAX_HEADER_BYTES):
                    self._raw_limit()
                    return
            if pos < n and len(self.queue) >= MAX_PIPELINE:
                self.backlog = data[pos:]
                self._pause()
                return

    def _next_turn(self) -> None:
        self.turn = None
        if self.phase is CLOSING:
            return
        if self.backlog and len(self.queue) < MAX_PIPELINE:
            data, self.backlog = self.backlog, b""
            self._feed(data)
        if not self.busy and self.turn is None:
            self._drain()
