"""Strata's own HTTP/1.1 server: ``serve`` (the edge: start the node, listen, drain on stop), ``serve_asgi`` /
``run_asgi`` (tiers 2 and 3: an ASGI app with its lifespan, every route through the bridge) and the descriptor-
bounded connection cap. Every tier gets the same header and body deadlines, raw-byte limits, connection cap and
fairness (``streaming.http`` / ``origin.http`` = ``uvicorn`` serves under uvicorn instead, without them).

At most ``max_connections`` open connections: past it a connection gets a 503 and is closed at once. No
TLS, no HTTP/2, no upgrades. ``strata edge --http uvicorn`` serves the same ASGI app under uvicorn instead
(the docs list what it does not guarantee).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
from collections.abc import Awaitable, Callable

from strata.shared.serving.front_door import Recorder
from strata.shared.serving.http.connection import EdgeServer
from strata.shared.serving.http.limits import FD_RESERVE
from strata.shared.serving.metrics import Instruments

__all__ = ["EdgeServer", "Lifespan", "StartupFailed", "connection_cap", "run_asgi", "serve", "serve_asgi"]

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
    cfg = node.cfg
    state = EdgeServer(node.recommend, node.asgi_app(), node.metrics, max_body=cfg.max_body_bytes,
                       idle_timeout_s=idle_timeout_s if idle_timeout_s is not None else cfg.idle_timeout_s,
                       header_timeout_s=cfg.header_timeout_s, body_timeout_s=cfg.body_timeout_s,
                       max_connections=connection_cap(cfg.max_connections), gate=node.gate)
    node.metrics.bind_server(connections=lambda: len(state.connections), refused=lambda: state.refused,
                             timed_out=lambda: state.timed_out)
    await node.start(announce=False)

    bound_port: list[int] = []

    async def listening(bound: int) -> None:
        bound_port.append(bound)
        logger.info("edge listening", extra={"host": host, "port": bound, "http": "strata"})
        node.announce()
        if started is not None:
            started(bound)
    try:
        await _serve(state, stop, listening, grace_s, host=host, port=port)
    finally:                                # also when the port was taken: stop what start() began
        await node.stop()
        if bound_port:
            logger.info("edge stopped")


async def _serve(state: EdgeServer, stop: asyncio.Event | None, listening: Callable[[int], Awaitable[None]],
                 grace_s: float, *, host: str | None = None, port: int = 0,
                 sock: socket.socket | None = None) -> None:
    """Listen (on ``host:port`` or the already bound ``sock``), serve until ``stop`` or SIGINT/SIGTERM, then
    drain in-flight requests for up to ``grace_s`` and abort the rest."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if sock is not None:
        srv = await loop.create_server(state.protocol, sock=sock, backlog=2048)
    else:
        srv = await loop.create_server(state.protocol, host, port, backlog=2048, reuse_address=True)
    sweeper = loop.create_task(state.sweep(), name="http-deadlines")
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):   # not the main thread / not supported
            pass
    try:
        await listening(srv.sockets[0].getsockname()[1])
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


def bind_http_gauges(m: Instruments) -> Callable[..., None]:
    """A ``bind_server`` for ``serve_asgi`` that exposes the server's connections, refusals and timeouts in
    ``m`` (``<namespace>_http_connections``, ``..._http_connections_refused_total``,
    ``..._http_request_timeouts_total``: the edge's names in the tier's namespace)."""
    m.define("http_connections", "open HTTP connections (Strata's own server)")
    m.define("http_connections_refused_total", "connections refused at the connection cap (503)")
    m.define("http_request_timeouts_total", "requests whose head or body missed its deadline (408)")

    def bind(*, connections: Callable[[], int], refused: Callable[[], int], timed_out: Callable[[], int]) -> None:
        m.gauge("http_connections", lambda: [((), float(connections()))])
        m.gauge("http_connections_refused_total", lambda: [((), float(refused()))], counter=True)
        m.gauge("http_request_timeouts_total", lambda: [((), float(timed_out()))], counter=True)
    return bind


class StartupFailed(Exception):
    """The app's ASGI lifespan startup failed (its message is logged)."""


class Lifespan:
    """The ASGI lifespan protocol around an app (what uvicorn's ``lifespan="on"`` does): ``startup`` waits for
    ``lifespan.startup.complete`` (``StartupFailed`` on ``.failed`` or an exception), ``shutdown`` for its end."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.state: dict = {}
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.started: asyncio.Future | None = None
        self.ended: asyncio.Future | None = None
        self.task: asyncio.Task | None = None

    async def _receive(self) -> dict:
        return await self.events.get()

    async def _send(self, msg: dict) -> None:
        started, ended = self.started, self.ended
        assert started is not None and ended is not None     # startup made them before running the app
        kind = msg["type"]
        if kind == "lifespan.startup.complete":
            started.set_result(None)
        elif kind == "lifespan.startup.failed":
            started.set_exception(StartupFailed(msg.get("message", "")))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and not ended.done():
            ended.set_result(msg.get("message", ""))

    def _done(self, task: asyncio.Task) -> None:
        started, ended = self.started, self.ended
        assert started is not None and ended is not None     # startup made them before running the app
        exc = None if task.cancelled() else task.exception()
        for fut in (started, ended):
            if not fut.done():
                if fut is started and exc is not None:
                    fut.set_exception(StartupFailed(repr(exc)))
                else:
                    fut.set_result("")

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        started, ended = loop.create_future(), loop.create_future()
        self.started, self.ended = started, ended
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self.task = loop.create_task(self.app(scope, self._receive, self._send), name="lifespan")
        self.task.add_done_callback(self._done)
        await self.events.put({"type": "lifespan.startup"})
        await started

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        ended = self.ended
        assert ended is not None                # startup made it before the task
        await self.events.put({"type": "lifespan.shutdown"})
        message = await ended
        if message:
            logger.error("lifespan shutdown failed: %s", message)


async def serve_asgi(app: Callable, cfg, sock: socket.socket, *, recorder: Recorder, name: str,
                     routes: tuple[str, ...] = (), bind_server: Callable[..., None] | None = None,
                     stop: asyncio.Event | None = None, started: Callable[[int], None] | None = None,
                     on_listening: Callable[[], None] | None = None, grace_s: float = 5.0) -> None:
    """Serve an ASGI ``app`` (tier 2's or the origin's) through this server: every route goes through the
    ASGI bridge, with the same header and body deadlines, raw-byte limits, connection cap and fairness as the
    edge. ``cfg``: the tier's settings section (``max_body_bytes`` and the ``_HttpServer`` limits); ``sock``:
    bound already (``listen.listen_socket``); ``recorder`` counts the answers this server gives itself;
    ``bind_server`` receives the connection gauges (as ``EdgeMetrics.bind_server``). Runs the app's lifespan
    around serving (``StartupFailed`` when its startup fails)."""
    lifespan = Lifespan(app)
    await lifespan.startup()
    state = EdgeServer(None, app, recorder, max_body=cfg.max_body_bytes, idle_timeout_s=cfg.idle_timeout_s,
                       header_timeout_s=cfg.header_timeout_s, body_timeout_s=cfg.body_timeout_s,
                       max_connections=connection_cap(cfg.max_connections), routes=routes,
                       lifespan_state=lifespan.state)
    if bind_server is not None:
        bind_server(connections=lambda: len(state.connections), refused=lambda: state.refused,
                    timed_out=lambda: state.timed_out)

    async def listening(bound: int) -> None:
        logger.info("%s listening", name, extra={"port": bound, "http": "strata"})
        if on_listening is not None:
            on_listening()
        if started is not None:
            started(bound)
    try:
        await _serve(state, stop, listening, grace_s, sock=sock)
    finally:
        await lifespan.shutdown()
        logger.info("%s stopped", name)


def run_asgi(app: Callable, cfg, sock: socket.socket, **options) -> None:
    """``serve_asgi`` on uvloop until SIGINT/SIGTERM; exits 3 when the app's startup failed (as uvicorn)."""
    import uvloop

    try:
        uvloop.run(serve_asgi(app, cfg, sock, **options))
    except StartupFailed as exc:
        logger.error("application startup failed: %s", exc)
        raise SystemExit(3) from None
    except KeyboardInterrupt:
        pass
