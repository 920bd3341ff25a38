"""The current session's recent items, as the stream processor keeps them in the session hash.

Field ``recent`` of ``shared.keys.session_key``: a msgpack list of item id strings, most recent first, at
most ``MAX_RECENT`` (views, clicks, carts of the session). Anything else is ignored with a warning (the
request goes on without session items): a reader must never fail a recommendation over one field.
"""

from __future__ import annotations

import logging

import msgpack

logger = logging.getLogger(__name__)

RECENT_FIELD = "recent"
MAX_RECENT = 30


def read_recent(raw: bytes | None) -> tuple[str, ...]:
    """Item ids from the field's bytes, most recent first, at most ``MAX_RECENT``; () if absent or unreadable."""
    if raw is None:
        return ()
    try:
        items = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        logger.warning("session field %r is not msgpack (%s); ignored", RECENT_FIELD, type(exc).__name__)
        return ()
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        logger.warning("session field %r is not a list of item ids; ignored", RECENT_FIELD)
        return ()
    return tuple(items[:MAX_RECENT])
