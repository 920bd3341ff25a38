"""The edge's subscription to session invalidations published by the stream processor.

The processor publishes one message per written batch on ``shared.keys.INVALIDATION_CHANNEL``: msgpack
``[[tenant, session_id], ...]``, the sessions whose new vectors it wrote; the edge then drops each one's
cached vector and cached answers, so the next request reads the fresh vector from the store. Runs in the background; redis-py reconnects and
re-subscribes by itself after a store outage (messages published meanwhile are lost; the session cache's
TTL bounds how stale a vector can get).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgpack

from strata.shared.keys import INVALIDATION_CHANNEL
from strata.shared.online_store.subscription import ChannelListener

logger = logging.getLogger(__name__)


class InvalidationListener:
    def __init__(self, url: str, on_session: Callable[[str, str], None]) -> None:
        self.url = url
        self.on_session = on_session
        self.received = 0
        self.errors = 0
        self.subscribed = asyncio.Event()

    def handle(self, data: bytes) -> None:
        try:
            sessions = msgpack.unpackb(data, raw=False)
        except Exception as exc:      # not ours: count it, never stop listening
            self.errors += 1
            logger.debug("invalidation message undecodable: %s: %s", type(exc).__name__, exc)
            return
        if type(sessions) is not list:
            self.errors += 1
            return
        for pair in sessions:
            if type(pair) is list and len(pair) == 2 and all(type(x) is str for x in pair):
                self.received += 1
                self.on_session(pair[0], pair[1])
            else:
                self.errors += 1

    async def run(self) -> None:
        await ChannelListener(self.url, INVALIDATION_CHANNEL, self.handle, field="edge.store.url",
                              on_error=self._failed, subscribed=self.subscribed).run()

    def _failed(self) -> None:
        self.errors += 1
