"""``strata edge`` on a busy port or a host it cannot bind: one line on stderr naming the address and the
reason, exit 2 (like every other bad setting), no traceback; under both HTTP servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from strata.deploy.local import strata_command

SERVERS = ["strata", "uvicorn"]


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.returncode == 2, proc.stderr
    return lines[0]


@pytest.mark.parametrize("http", SERVERS)
def test_busy_port_is_one_line_and_exit_2(registry_dir: Path, busy_port: int, http: str) -> None:
    proc = subprocess.run([*strata_command(), "edge", "--registry", str(registry_dir), "--store", "none",
                           "--port", str(busy_port), "--http", http], capture_output=True, text=True, timeout=60)
    line = _one_line(proc)
    assert line == (f"strata edge: bad config: cannot listen on 127.0.0.1:{busy_port}: Address already in use "
                    "(config key 'edge.port')")


@pytest.mark.parametrize("http", SERVERS)
def test_unresolvable_host_is_one_line_and_exit_2(registry_dir: Path, http: str) -> None:
    proc = subprocess.run([*strata_command(), "edge", "--registry", str(registry_dir), "--store", "none",
                           "--host", "999.1.1.1", "--port", "0", "--http", http],
                          capture_output=True, text=True, timeout=60)
    line = _one_line(proc)
    assert line.startswith("strata edge: bad config: cannot listen on 999.1.1.1:0: "), line
    assert line.endswith("(config key 'edge.host')"), line


def test_port_taken_after_the_check_is_still_one_line(registry_dir: Path, busy_port: int) -> None:
    """The edge's own server binding a port that was free at the check: the same line, from its bind."""
    skip_check = ("import sys, strata.shared.serving.listen as a; a.check_listen_address = lambda *args, **kw: None; "
                  "from strata.deploy.cli import app; sys.argv[0] = 'strata'; app()")
    proc = subprocess.run([sys.executable, "-c", skip_check, "edge", "--registry", str(registry_dir),
                           "--store", "none", "--port", str(busy_port), "--log-level", "WARNING"],
                          capture_output=True, text=True, timeout=60)
    line = _one_line(proc)
    assert line == (f"strata edge: bad config: cannot listen on 127.0.0.1:{busy_port}: Address already in use "
                    "(config key 'edge.port')")
