"""A background subscription to one pub/sub channel of the online store: redis-py reconnects and re-subscribes
by itself after a store outage (messages published meanwhile are lost); a cancel is honoured even when it meets
redis-py's own read timeout. The edge listens for session invalidations, the origin for erased users.
``subscribed`` is set once the store confirmed the subscription (and again after each re-subscription).

On a cluster (``redis+cluster://``) a classic PUBLISH reaches every node, replicas included: the listener
subscribes on any node and moves to the next one after each failure (a killed master's subscribers carry on)."""

from __future__ import annotations

import asyncio
import contextlib
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
        failures = 0
        pubsub = await _subscriber(r, failures)
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
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None:
                        kind = msg.get("type")
                        if kind == "message":
                            self.on_message(msg["data"])
                        elif kind == "subscribe":      # the store confirmed it: what is published now arrives
                            self.subscribed.set()
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
                    if _is_cluster(r):        # its node may be gone: listen on the next one
                        failures += 1
                        with contextlib.suppress(Exception):
                            await pubsub.aclose()
                        with contextlib.suppress(Exception):
                            pubsub = await _subscriber(r, failures)
        finally:
            await pubsub.aclose()
            await r.aclose()


def _is_cluster(r) -> bool:
    return hasattr(r, "nodes_manager")


async def _subscriber(r, attempt: int):
    """A pub/sub connection: on a cluster, on its ``attempt``-th node (any node hears every classic PUBLISH)."""
    if not _is_cluster(r):
        return r.pubsub(ignore_subscribe_messages=False)   # its confirmation sets ``subscribed``
    with contextlib.suppress(Exception):
        await r.nodes_manager.initialize()
    nodes = sorted(r.get_nodes(), key=lambda n: n.name)
    node = nodes[attempt % len(nodes)] if nodes else None
    return r.pubsub(node=node, ignore_subscribe_messages=False)   # its confirmation sets ``subscribed``
