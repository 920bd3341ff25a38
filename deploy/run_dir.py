"""The demo's one temporary directory per run: ``<tmp>/strata-demo-<pid>-XXXX`` holds the edge's log and
Valkey's working directory, and is removed when the demo exits, however it exits (``strata up`` and
``strata simulate`` use the same, named ``strata-up-<pid>-XXXX``).

A demo killed with SIGKILL cannot clean up (its children still die, through PDEATHSIG), so each start
first removes the directories whose owner PID no longer runs. A directory whose PID was since reused by
another process is kept until that process is gone too: never removing a live run's files matters more.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

PREFIX = "strata-demo-"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def remove_stale(root: Path, prefix: str = PREFIX) -> list[Path]:
    """Remove this user's ``prefix`` directories under ``root`` whose owner process is dead; returns them."""
    removed = []
    owned = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    for entry in root.glob(f"{prefix}*"):
        owner = owned.match(entry.name)
        if owner is None or not entry.is_dir() or entry.is_symlink():
            continue
        pid = int(owner.group(1))
        if pid == os.getpid() or pid_alive(pid) or entry.stat().st_uid != os.getuid():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        logger.info("removed a stale demo directory", extra={"path": str(entry), "owner_pid": pid})
    return removed


class RunDir:
    """``with RunDir() as path:`` stale directories removed, a fresh one made, removed again on exit."""

    def __init__(self, root: Path | None = None, prefix: str = PREFIX) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir())
        self.prefix = prefix
        self.path: Path | None = None

    def __enter__(self) -> Path:
        remove_stale(self.root, self.prefix)
        self.path = Path(tempfile.mkdtemp(prefix=f"{self.prefix}{os.getpid()}-", dir=self.root))
        return self.path

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
