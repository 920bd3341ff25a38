"""A connection's phase: what it is reading, or that it is closing. One value instead of the booleans
(in a message, in its headers, closing) the deadlines, limits and parser callbacks used to combine."""

from __future__ import annotations

from enum import Enum


class Phase(Enum):
    """``IDLE`` between requests; ``HEADERS`` from a request's first byte to the end of its headers (the
    header deadline runs); ``BODY`` until the request is complete (the body deadline runs); a request that
    fails while being read is answered and the phase goes back to ``IDLE``. ``CLOSING`` is final: an answer
    that ends the connection was written, or the peer left, or the server refused or dropped it; input is
    then discarded (lingering close)."""

    IDLE = "idle"
    HEADERS = "headers"
    BODY = "body"
    CLOSING = "closing"


IDLE, HEADERS, BODY, CLOSING = Phase.IDLE, Phase.HEADERS, Phase.BODY, Phase.CLOSING
