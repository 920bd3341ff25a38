"""A background subscription to one pub/sub channel of the online store: redis-py reconnects and re-subscribes
by itself after a store outage (messages published meanwhile are lost); a cancel is honoured even when it meets
redis-py's own read timeout. The edge listens for session invalidations, the origin for erased users."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from strata.shared.online_store.client import connect

logger = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 1.0


class ChannelListener:
    def __init__(self, url: str, channel: str, on_message: Callable[[bytes], None], *, field: str,
                 on_error: Callable[[], None] | None = None, subscribed: asyncio.Event | None = None) -> None:
        self.url = url
        self.channel = channel
        self.on_message = on_message
        self.field = field
        self.on_error = on_error          # called per failed subscribe/read (the store is down)
        self.subscribed = subscribed or asyncio.Event()

    async def run(self) -> None:
        r = connect(self.url, CONNECT_TIMEOUT_S, field=self.field, blocking_reads=True)
        if r is None:
            return
        pubsub = r.pubsub(ignore_subscribe_messages=True)
        me = asyncio.current_task()
        try:
            while True:
                if me is not None and me.cancelling():
                    # redis-py turns a cancel that meets its own read timeout into "no message" (or a
                    # TimeoutError): the cancel is still pending, so honour it here
                    raise asyncio.CancelledError
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(self.channel)
                        self.subscribed.set()
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self.on_message(msg["data"])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:      # store down: try again shortly
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError from exc
                    if self.on_error is not None:
                        self.on_error()
                    self.subscribed.clear()
                    logger.debug("subscription to %s: %s: %s", self.channel, type(exc).__name__, exc)
                    await asyncio.sleep(0.5)
        finally:
            await pubsub.aclose()
            await r.aclose()
