"""``strata demo`` leaves nothing in the temp directory: one ``strata-demo-<pid>-*`` directory per run,
removed when the demo exits (``--once``, SIGTERM), and removed at the next start when the demo was
killed with SIGKILL (its children die through PDEATHSIG, its directory stays until then)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from strata.deploy.local import free_port, port_open, strata_command


def _strata_entries(tmp: Path) -> list[str]:
    """What the demo could have left: anything named strata-* (libraries keep their own files there)."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("strata-"))


@pytest.fixture
def tmp_root(tmp_path: Path) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    return root


def _env(tmp_root: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp_root), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def _start_serving(registry: Path, tmp_root: Path, cwd: Path) -> tuple[subprocess.Popen, list[str]]:
    """``strata demo`` (serving, not --once) started and read up to its "serving" line; a thread keeps
    collecting its output into the returned list."""
    argv = [*strata_command(), "demo", "--registry", str(registry), "--port", str(free_port())]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(tmp_root), cwd=cwd, start_new_session=True)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    if not _wait_for_line(out, "serving", 120, proc):
        proc.kill()
        proc.wait()
        raise AssertionError("demo did not reach 'serving':\n" + "".join(out))
    return proc, out


def _wait_for_line(out: list[str], start: str, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(line.startswith(start) for line in list(out)):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def _ports(out: str) -> list[int]:
    found = re.findall(r"(?:valkey: redis://|edge: +http://|broker: |streaming: http://|origin: http://)"
                       r"127\.0\.0\.1:(\d+)", out)
    assert len(found) == 5, out
    return [int(p) for p in found]


def _wait_closed(ports: list[int], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(port_open("127.0.0.1", p) for p in ports):
        assert time.monotonic() < deadline, f"ports {ports} still open {timeout_s}s after the demo died"
        time.sleep(0.1)


def test_demo_stopped_by_sigterm_removes_its_temp_files(full_registry_dir: Path, tmp_root: Path,
                                                        tmp_path: Path) -> None:
    proc, out = _start_serving(full_registry_dir, tmp_root, tmp_path)
    try:
        assert len(_strata_entries(tmp_root)) == 1, "one directory while it runs"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(out)
    assert _wait_for_line(out, "stopped; everything the demo started has been stopped", 10), "".join(out)
    _wait_closed(_ports("".join(out)))
    assert _strata_entries(tmp_root) == []


def test_a_sigkilled_demo_leaves_a_directory_the_next_start_removes(full_registry_dir: Path, tmp_root: Path,
                                                                    tmp_path: Path) -> None:
    """... and that next start, a ``--once`` run, leaves nothing of its own either."""
    killed, out = _start_serving(full_registry_dir, tmp_root, tmp_path)
    killed.kill()          # SIGKILL: no cleanup runs in the demo; its children get SIGTERM (PDEATHSIG)
    killed.wait()
    _wait_closed(_ports("".join(out)))
    left = _strata_entries(tmp_root)
    assert [re.match(r"strata-demo-(\d+)-", name) is not None for name in left] == [True], left
    assert left[0].startswith(f"strata-demo-{killed.pid}-")
    alive = tmp_root / f"strata-demo-{os.getpid()}-othertest"   # a live owner's directory is never touched
    alive.mkdir()
    argv = [*strata_command(), "demo", "--registry", str(full_registry_dir), "--port", str(free_port()), "--once"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=_env(tmp_root), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{tmp_root}/strata-demo-" in proc.stdout          # its logs were in its own run directory
    assert _strata_entries(tmp_root) == [alive.name]          # the killed one's removed, its own removed at exit
