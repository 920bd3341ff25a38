"""``strata up`` as a user runs it, for the e2e tests: started in its own process group, ready once it wrote its
endpoints file, its output collected; stopped with the Ctrl-C a terminal sends. Plus what those tests ask of the
process tree (Linux ``/proc``): a process's children and whether a pid still runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from strata.deploy.local import strata_command


@dataclass
class Up:
    proc: subprocess.Popen
    endpoints_file: Path
    endpoints: dict
    run_dir: Path
    out: list[str]

    def output(self) -> str:
        return "".join(self.out)


def children(pid: int) -> dict[int, str]:
    """pid -> command line of every process whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def alive(pid: int) -> bool:
    """Runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, up: Up | None = None) -> None:
    """Poll ``predicate``; fail with ``what`` (and the output of ``up``) when it stays false for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s}s" + (f"; output:\n{up.output()}" if up else ""))
        time.sleep(0.1)


@contextmanager
def running_up(registry: Path, tmp: Path, *flags: str, ready_s: float = 240) -> Iterator[Up]:
    """``strata up --registry REGISTRY --port 0 FLAGS`` with its endpoints file and run directory under ``tmp``;
    Ctrl-C (then SIGKILL) at the end unless a test stopped it already."""
    endpoints_file = tmp / "endpoints.json"
    run_dir = tmp / "run"
    argv = [*strata_command(), "up", "--registry", str(registry), "--port", "0",
            "--endpoints-file", str(endpoints_file), "--run-dir", str(run_dir), *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp,
                            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    out: list[str] = []
    assert proc.stdout is not None
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_for(lambda: endpoints_file.exists() or proc.poll() is not None, ready_s,
                 "strata up wrote no endpoints file")
        assert proc.poll() is None, "".join(out)
        yield Up(proc, endpoints_file, json.loads(endpoints_file.read_text()), run_dir, out)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
