"""The edge's subscription to session invalidations published by the stream processor.

The processor publishes one message per written batch on ``shared.keys.INVALIDATION_CHANNEL``: msgpack
``[[tenant, session_id], ...]``, the sessions whose new vectors it wrote; the edge then drops each one's
cached vector and cached answers, so the next request reads the fresh vector from the store. Runs in the background; redis-py reconnects and
re-subscribes by itself after a store outage (messages published meanwhile are lost; the session cache's
TTL bounds how stale a vector can get).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgpack

from strata.shared.keys import INVALIDATION_CHANNEL
from strata.shared.online_store.client import connect

logger = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 1.0


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
        r = connect(self.url, CONNECT_TIMEOUT_S, field="edge.store.url", blocking_reads=True)
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
                        await pubsub.subscribe(INVALIDATION_CHANNEL)
                        self.subscribed.set()
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self.handle(msg["data"])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:      # store down: try again shortly
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError from exc
                    self.errors += 1
                    self.subscribed.clear()
                    logger.debug("invalidation subscription: %s: %s", type(exc).__name__, exc)
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
    """A pub/sub connection. On a cluster a classic PUBLISH reaches every node, replicas included: listen on
    any node, the next one after each failure (a killed master's subscribers move on by themselves)."""
    if not _is_cluster(r):
        return r.pubsub(ignore_subscribe_messages=True)
    with contextlib.suppress(Exception):
        await r.nodes_manager.initialize()
    nodes = sorted(r.get_nodes(), key=lambda n: n.name)
    node = nodes[attempt % len(nodes)] if nodes else None
    return r.pubsub(node=node, ignore_subscribe_messages=True)
