"""The demo's run directory: made per run with the owner's PID in its name, removed on exit (also on an
exception), and only dead owners' directories are swept at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strata.deploy.run_dir import PREFIX, RunDir, remove_stale


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_directory_named_after_the_owner_removed_on_exit(tmp_path: Path) -> None:
    with RunDir(tmp_path) as path:
        assert path.parent == tmp_path and path.name.startswith(f"{PREFIX}{os.getpid()}-")
        (path / "edge.log").write_text("x")
        (path / "strata-valkey-1").mkdir()
    assert list(tmp_path.iterdir()) == []


def test_removed_when_the_run_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), RunDir(tmp_path) as path:
        (path / "edge.log").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_only_dead_owners_directories_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"{PREFIX}{_dead_pid()}-abc"
    (dead / "strata-valkey-x").mkdir(parents=True)
    mine = tmp_path / f"{PREFIX}{os.getpid()}-abc"
    parent = tmp_path / f"{PREFIX}{os.getppid()}-abc"
    not_ours = [tmp_path / f"{PREFIX}notapid", tmp_path / "strata-edge-x.log", tmp_path / "other"]
    for d in (mine, parent, not_ours[0], not_ours[2]):
        d.mkdir()
    not_ours[1].write_text("x")
    assert remove_stale(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, parent, *not_ours))


def test_a_new_run_sweeps_first(tmp_path: Path) -> None:
    dead = tmp_path / f"{PREFIX}{_dead_pid()}-abc"
    dead.mkdir()
    with RunDir(tmp_path) as path:
        assert [p.name for p in tmp_path.iterdir()] == [path.name]
