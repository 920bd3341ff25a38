"""The edge's own HTTP/1.1 server: ``serve`` (start the node, listen, drain on stop) and the descriptor-
bounded connection cap.

At most ``max_connections`` open connections: past it a connection gets a 503 and is closed at once. No
TLS, no HTTP/2, no upgrades. ``strata edge --http uvicorn`` serves the same ASGI app under uvicorn instead
(the docs list what it does not guarantee).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable

from strata.edge.http.connection import EdgeServer
from strata.edge.http.limits import FD_RESERVE

__all__ = ["EdgeServer", "connection_cap", "serve"]

logger = logging.getLogger(__name__)


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered so open connections can never exhaust the process's file descriptors (an
    accept that fails on EMFILE stalls every client). The soft descriptor limit is raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    cap = min(wanted, max(soft - FD_RESERVE, 1))
    if cap < wanted:
        logger.warning("edge.max_connections lowered to %d: the process may open %d files", cap, soft)
    return cap


async def serve(node, host: str, port: int, *, idle_timeout_s: float | None = None,
                stop: asyncio.Event | None = None, started: Callable[[int], None] | None = None,
                grace_s: float = 5.0) -> None:
    """Start the node's background work, serve until ``stop`` is set (or SIGINT/SIGTERM), then drain
    in-flight requests (up to ``grace_s``) and stop the node.

    ``node`` (an ``edge.node.EdgeNode``) provides ``recommend`` (a Handler), ``metrics`` (a Recorder),
    ``asgi_app()`` (ops routes and docs), ``start``/``stop`` and ``cfg`` (limits and timeouts)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    cfg = node.cfg
    state = EdgeServer(node.recommend, node.asgi_app(), node.metrics, max_body=cfg.max_body_bytes,
                       idle_timeout_s=idle_timeout_s if idle_timeout_s is not None else cfg.idle_timeout_s,
                       header_timeout_s=cfg.header_timeout_s, body_timeout_s=cfg.body_timeout_s,
                       max_connections=connection_cap(cfg.max_connections), gate=node.gate)
    node.metrics.bind_server(connections=lambda: len(state.connections), refused=lambda: state.refused,
                             timed_out=lambda: state.timed_out)
    await node.start()
    try:
        srv = await loop.create_server(state.protocol, host, port, backlog=2048, reuse_address=True)
    except BaseException:                   # e.g. the port is taken: stop what start() began
        await node.stop()
        raise
    sweeper = loop.create_task(state.sweep(), name="http-deadlines")
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):   # not the main thread / not supported
            pass
    bound = srv.sockets[0].getsockname()[1]
    logger.info("edge listening", extra={"host": host, "port": bound, "http": "strata"})
    if started is not None:
        started(bound)
    try:
        await stop.wait()
    finally:
        state.stopping = True
        srv.close()
        for conn in list(state.connections):
            conn.shutdown()
        deadline = loop.time() + grace_s
        while state.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(state.connections):
            conn.transport.abort()
        sweeper.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await node.stop()
        logger.info("edge stopped")
