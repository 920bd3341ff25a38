"""E2E tests start real ``strata`` processes and talk to them over HTTP: marked ``e2e``."""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strata.deploy.local import ManagedProcess, free_port, strata_command
from strata.shared.models.bundle import read_current
from tests.support.registry_cache import cached_registry

_HERE = Path(__file__).parent
EDGE_MODEL = "edge-scorer"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@dataclass(frozen=True)
class EdgeNode:
    url: str
    process: ManagedProcess
    version: str
    registry: Path


@pytest.fixture(scope="module", params=["strata", "uvicorn"])
def edge_node(request, registry_dir: Path, session_store, tmp_path_factory) -> Iterator[EdgeNode]:
    """``strata edge`` as a real process on a free port, against the session's Valkey and bundle; once
    with the edge's own HTTP server (the default) and once under uvicorn."""
    session_store.start()
    port = free_port()
    argv = [*strata_command(), "edge", "--registry", str(registry_dir), "--host", "127.0.0.1",
            "--port", str(port), "--store", session_store.url, "--log-level", "WARNING", "--http", request.param]
    # a loaded CI machine can miss the 3 ms default store budget (the answer is then, correctly, degraded);
    # these tests are about the contract with a healthy store
    env = {**os.environ, "STRATA_EDGE__STORE__TIMEOUT_MS": "250"}
    proc = ManagedProcess("edge", argv, ready_url=f"http://127.0.0.1:{port}/readyz", env=env,
                          log_path=tmp_path_factory.mktemp("edge-log") / "edge.log")   # pytest's tmp, not /tmp
    proc.start(timeout_s=60)
    try:
        yield EdgeNode(f"http://127.0.0.1:{port}", proc, read_current(registry_dir, EDGE_MODEL), registry_dir)
    finally:
        rc = proc.stop()
        # The edge's own server drains and exits 0 on SIGTERM. uvicorn shuts down gracefully, then
        # re-raises the signal: -SIGTERM (or 0) is clean there. -SIGKILL means SIGTERM was ignored.
        clean = (0,) if request.param == "strata" else (0, -signal.SIGTERM)
        assert rc in clean, f"edge ({request.param}) exited with {rc} on SIGTERM; output:\n{proc.output_tail()}"


def _add_text_encoder(models: Path, root: Path) -> None:
    import shutil

    from strata.model_export.text_encoder import export_text_encoder

    shutil.copytree(models, root, dirs_exist_ok=True)
    export_text_encoder(root)


@pytest.fixture(scope="session")
def full_registry_dir(models_registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bundle ``strata up`` needs over one 500-item world: a copy of ``models_registry_dir`` (edge scorer,
    retrieval, ranker) plus the MiniLM ``text-encoder`` exported into it. Tests that start ``strata up`` or
    ``strata demo`` use it (or a copy): they would otherwise export the missing bundles into a shared registry.
    Built once per source state and shared by the workers and later runs, like the registries it starts from
    (the recipe names tests/conftest.py's, whose ``_export_models`` makes ``models_registry_dir``)."""
    recipe = inspect.getsource(_add_text_encoder) + hashlib.sha256((_HERE.parent / "conftest.py").read_bytes()).hexdigest()
    root = tmp_path_factory.mktemp("full-registry") / "registry"
    return cached_registry("full-registry", recipe, functools.partial(_add_text_encoder, models_registry_dir), root)
