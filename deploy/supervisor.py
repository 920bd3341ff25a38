"""Keeps ``strata up``'s processes running: a process that exits while it should run is restarted after a
backoff that doubles with each consecutive crash (capped), and every exit and restart is logged.

One thread polls the processes; ``stop()`` ends it first (so nothing is restarted while the stack is
being taken down), then stops the processes in the reverse of their start order. A restart waits for
the process to be ready again before the next poll, and a restart that fails to become ready counts as
one more crash (longer backoff), never as a reason to give up: an SRE would rather see the log lines.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from strata.deploy.errors import ProcessFailed
from strata.deploy.local import ManagedProcess, _Child

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restart ``n`` (1-based) of a run of consecutive crashes: first_s * 2**(n-1), at most max_s.
    A process that ran for ``stable_s`` before it crashed starts a new run (its next delay is first_s)."""

    first_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 30.0

    def delay(self, n: int) -> float:
        return min(self.first_s * 2.0 ** max(n - 1, 0), self.max_s)


@dataclass(eq=False)
class Supervised:
    """One process the supervisor keeps running; ``ready_url`` (ManagedProcess only) is polled after each start."""

    name: str
    child: _Child
    ready_url: str | None = None
    ready_timeout_s: float = 120.0
    restarts: int = 0               # restarts so far (the test and the endpoints table read it)
    crashes_in_a_row: int = 0
    started_at: float = 0.0
    next_start: float | None = None  # set while a restart is pending
    history: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.child.pid

    @property
    def running(self) -> bool:
        return self.child.running


def wait_url(url: str, timeout_s: float, alive: Callable[[], bool], cancelled: Callable[[], bool]) -> None:
    """Poll ``url`` until it answers 200; ProcessFailed if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not cancelled():
        if not alive():
            raise ProcessFailed(f"exited before it was ready at {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ProcessFailed(f"not ready at {url} within {timeout_s:.0f}s")
        time.sleep(0.05)


class Supervisor:
    def __init__(self, say: Callable[[str], None], backoff: Backoff = Backoff(), poll_s: float = 0.2) -> None:
        self.say = say                  # one line per exit / restart (console and the run directory's log)
        self.backoff = backoff
        self.poll_s = poll_s
        self.services: list[Supervised] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- starting ---------------------------------------------------------------------------------------
    def spawn(self, svc: Supervised) -> Supervised:
        """Start ``svc`` (the engines wait for themselves; a ManagedProcess is only spawned) and track it."""
        if isinstance(svc.child, ManagedProcess):
            svc.child.start(wait=False)
        else:
            svc.child.start()
        svc.started_at = time.monotonic()
        if svc not in self.services:
            self.services.append(svc)
        return svc

    def wait_ready(self, services: list[Supervised]) -> None:
        """Wait until every one of ``services`` is ready; the first that fails raises with its log tail."""
        for svc in services:
            if svc.ready_url is None:
                continue
            try:
                wait_url(svc.ready_url, svc.ready_timeout_s, lambda s=svc: s.running, self._stop.is_set)
            except ProcessFailed as exc:
                tail = svc.child.output_tail(30) if isinstance(svc.child, ManagedProcess) else ""
                raise ProcessFailed(f"{svc.name} {exc.reason}; last output:\n{tail}") from None

    def start_watching(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="strata-supervisor", daemon=True)
            self._thread.start()

    # -- the watch loop -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            for svc in list(self.services):
                if self._stop.is_set():
                    return
                try:
                    self._check(svc)
                except Exception:          # never let one bad restart end the supervision of the others
                    logger.exception("supervising %s failed", svc.name)

    def _check(self, svc: Supervised) -> None:
        now = time.monotonic()
        if svc.next_start is None:
            if svc.running:
                return
            code = getattr(svc.child, "returncode", None)
            if code is None and svc.child._proc is not None:
                code = svc.child._proc.poll()
            ran = now - svc.started_at
            svc.crashes_in_a_row = 1 if ran >= self.backoff.stable_s else svc.crashes_in_a_row + 1
            delay = self.backoff.delay(svc.crashes_in_a_row)
            svc.next_start = now + delay
            self._note(svc, f"{svc.name} (pid {svc.pid}) exited with code {code} after {ran:.1f}s; "
                            f"restarting in {delay:.1f}s (crash {svc.crashes_in_a_row} in a row)")
            svc.child.stop()        # reap it and remove what it left (a group's stragglers, a working directory)
            return
        if now < svc.next_start:
            return
        svc.next_start = None
        t0 = time.monotonic()
        try:
            self.spawn(svc)
            self.wait_ready([svc])
        except ProcessFailed as exc:
            self._note(svc, f"{svc.name}: restart failed: {exc.reason.splitlines()[0]}")
            svc.child.stop()
            svc.started_at = t0              # counts as a crash right away, with a longer backoff
            return
        svc.restarts += 1
        self._note(svc, f"{svc.name} restarted (pid {svc.pid}), ready in {time.monotonic() - t0:.1f}s "
                        f"(restart {svc.restarts})")

    def _note(self, svc: Supervised, line: str) -> None:
        svc.history.append(line)
        logger.info(line)
        self.say(line)

    # -- stopping -------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the watch loop, then stop every process, last started first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=150)
            self._thread = None
        for svc in reversed(self.services):
            try:
                svc.child.stop()
            except Exception:              # keep stopping the others
                logger.exception("stopping %s failed", svc.name)
