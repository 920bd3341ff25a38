"""Start servers and the load generator as pinned subprocesses; always stop what was started.

Pinning: the server under test runs on one core, the load generator on another, so their work never
interleaves on a core and req/s is a per-core figure. Cores come from the current affinity mask.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

from strata.loadtest.launch import free_port  # noqa: F401 - re-exported for the bench modules

HOST = "127.0.0.1"
# Keep numeric libraries single-threaded inside the pinned processes.
_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True, slots=True)
class Cores:
    server: int
    loadgen: int

    @property
    def separate(self) -> bool:
        return self.server != self.loadgen


def pick_cores() -> Cores:
    cpus = sorted(os.sched_getaffinity(0))
    return Cores(cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])


def _pin(core: int):
    def preexec() -> None:
        os.sched_setaffinity(0, {core})
    return preexec


def edge_command(registry: str, port: int, http: str = "strata", store: str = "none") -> list[str]:
    """``strata edge`` when the CLI is installed, else the edge's own entry point. ``http``: the edge's
    own HTTP server ("strata") or its ASGI app under uvicorn ("uvicorn"); ``store``: a redis:// URL or none."""
    strata = Path(sys.executable).parent / "strata"
    if strata.exists() and importlib.util.find_spec("strata.deploy.cli") is not None:
        return [str(strata), "edge", "--registry", registry, "--port", str(port), "--store", store, "--http", http]
    code = ("from strata.shared.config import load_settings; from strata.edge.server import run_edge; "
            f"run_edge(load_settings(None, edge={{'registry': {registry!r}, 'port': {port}, 'http': {http!r}, "
            f"'store': {{'url': {store!r}}}}}))")
    return [sys.executable, "-c", code]


def baseline_command(module: str, registry: str, port: int) -> list[str]:
    return [sys.executable, "-m", f"strata.loadtest.baselines.{module}", "--registry", registry, "--port", str(port)]


def trivial_command(port: int) -> list[str]:
    return [sys.executable, "-m", "strata.loadtest.trivial_server", "--port", str(port)]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class PinnedServer:
    """A server subprocess on one core. ``with PinnedServer(...) as s:`` waits for readiness and
    always terminates the process (and its group) on exit."""

    def __init__(self, name: str, argv: list[str], port: int, core: int, ready_path: str = "/readyz",
                 ready_timeout_s: float = 90.0, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.port, self.core = name, argv, port, core
        self.env = env or {}                # extra environment of the server (e.g. auth switched on)
        self.ready_path, self.ready_timeout_s = ready_path, ready_timeout_s
        self.proc: subprocess.Popen | None = None
        fd, path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
        os.close(fd)
        self._log_path = Path(path)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> PinnedServer:
        with open(self._log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **_ENV, **self.env}, preexec_fn=_pin(self.core),
                                         start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _ = http_get(self.port, self.ready_path, timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready on port {self.port} after {self.ready_timeout_s}s: "
                           f"{self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        return self._log_path.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log_path.unlink(missing_ok=True)


def core_busy_ticks(core: int) -> int:
    """Clock ticks one CPU spent on processes or lost to the hypervisor since boot (user + nice +
    system + steal; interrupt time is left out: loopback packet work belongs to the benchmark)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2] + v[7]
    raise ValueError(f"cpu{core} not in /proc/stat")


def process_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_loadgen(port: int, workload_path: str, connections: int, duration_s: float, warmup_s: float,
                core: int, count_pattern: bytes | None = None) -> dict:
    """One measurement point in a fresh load-generator process pinned to ``core``."""
    argv = [sys.executable, "-m", "strata.loadtest.loadgen", "--port", str(port), "--workload", workload_path,
            "--connections", str(connections), "--duration", str(duration_s), "--warmup", str(warmup_s)]
    if count_pattern:
        argv += ["--count-pattern-hex", count_pattern.hex()]
    out = subprocess.run(argv, capture_output=True, env={**os.environ, **_ENV}, preexec_fn=_pin(core),
                         timeout=duration_s + warmup_s + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}): {out.stderr.decode()[-2000:]}")
    return orjson.loads(out.stdout)
