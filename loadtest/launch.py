"""What a benchmark needs started on this machine, handed in by the caller.

``strata.loadtest`` measures; ``strata.deploy`` starts things (it sits on top and may import everything).
So the benchmarks that need real engines or ``strata`` processes do not import the launcher: the CLI
passes ``strata.deploy.local.LAUNCHER`` in, and tests may pass their own.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Launcher:
    store: Callable[[], Any]      # a valkey-server: context manager / .start(); .url, .pid, .client()
    broker: Callable[[], Any]     # a Kafka-protocol broker: context manager; .bootstrap, .pid
    process: Callable[..., Any]   # (name, argv, *, ready_url=None, log_path=None) -> a supervised process
    command: Callable[[], list[str]]   # argv prefix that runs the ``strata`` CLI


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
