"""One CLI behaviour: every serving command, each common mistake, the same outcome — one line on stderr that
names the setting at fault, and exit 2 for a bad setting (exit 1 for a missing bundle), no traceback, no
server logs. ``--store none`` either works (the command serves) or is refused in that one line.

The table below is the contract; a command that gains a flag from the list gains a row."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from strata.deploy.local import ManagedProcess, free_port, strata_command

BUSY = "{busy}"           # replaced by a port something listens on
REGISTRY = "{registry}"   # replaced by a registry with the default export
NOTHING = "{nothing}"     # replaced by an empty directory
DEAD = "127.0.0.1:1"      # nothing listens there: a broker / store that is down
DEAD_STORE = "redis://127.0.0.1:1/0"
NO_TIER2 = {"STRATA_STREAMING__TIER2__ENABLED": "false"}

# (command words, mistake, its flags, env, exit code, the line (BUSY and NOTHING filled in); "..." splits
# a line checked by its start and end)
MISTAKES = [
    # a busy port
    ("edge", "busy port", ["--registry", REGISTRY, "--store", "none", "--port", BUSY], {}, 2,
     "strata edge: bad config: cannot listen on 127.0.0.1:{busy}: Address already in use (config key 'edge.port')"),
    ("origin", "busy port", ["--registry", REGISTRY, "--store", "none", "--port", BUSY], {}, 2,
     "strata origin: bad config: cannot listen on 127.0.0.1:{busy}: Address already in use "
     "(config key 'origin.port')"),
    ("streaming serve", "busy port", ["--registry", REGISTRY, "--store", DEAD_STORE, "--broker", DEAD, "--port", BUSY],
     {}, 2, "strata streaming serve: bad config: cannot listen on 127.0.0.1:{busy}: Address already in use "
     "(config key 'streaming.port')"),
    ("streaming process", "busy port", ["--registry", REGISTRY, "--store", DEAD_STORE, "--broker", DEAD,
                                        "--metrics-port", BUSY], {}, 2,
     "strata streaming process: bad config: cannot listen on 127.0.0.1:{busy}: Address already in use "
     "(flag --metrics-port)"),
    ("streaming broker", "busy port", ["--port", BUSY], {}, 2,
     "strata streaming broker: bad config: cannot listen on 127.0.0.1:{busy}: Address already in use (flag --port)"),
    # a host that does not resolve
    ("edge", "bad host", ["--registry", REGISTRY, "--store", "none", "--port", "0", "--host", "999.1.1.1"], {}, 2,
     "strata edge: bad config: cannot listen on 999.1.1.1:0: ...(config key 'edge.host')"),
    ("origin", "bad host", ["--registry", REGISTRY, "--store", "none", "--port", "0", "--host", "999.1.1.1"], {}, 2,
     "strata origin: bad config: cannot listen on 999.1.1.1:0: ...(config key 'origin.host')"),
    ("streaming serve", "bad host", ["--registry", REGISTRY, "--store", DEAD_STORE, "--broker", DEAD, "--port", "0",
                                     "--host", "999.1.1.1"], {}, 2,
     "strata streaming serve: bad config: cannot listen on 999.1.1.1:0: ...(config key 'streaming.host')"),
    ("streaming process", "bad host", ["--registry", REGISTRY, "--store", DEAD_STORE, "--broker", DEAD,
                                       "--metrics-port", "0"], {"STRATA_STREAMING__HOST": "999.1.1.1"}, 2,
     "strata streaming process: bad config: cannot listen on 999.1.1.1:0: ...(config key 'streaming.host')"),
    # no bundle where --registry points
    ("edge", "no registry", ["--registry", NOTHING, "--store", "none", "--port", "0"], {}, 1,
     "strata edge: error: no CURRENT pointer at {nothing}/edge-scorer/CURRENT: no edge-scorer bundle in "
     "{nothing} (strata export --out {nothing} makes one)"),
    ("origin", "no registry", ["--registry", NOTHING, "--store", "none", "--port", "0"], {}, 1,
     "strata origin: error: no CURRENT pointer at {nothing}/edge-scorer/CURRENT: no edge-scorer bundle in "
     "{nothing} (strata export --out {nothing} makes one)"),
    ("streaming serve", "no registry", ["--registry", NOTHING, "--store", DEAD_STORE, "--broker", DEAD, "--port", "0"],
     {}, 1, "strata streaming serve: error: no CURRENT pointer at {nothing}/edge-scorer/CURRENT: no edge-scorer "
     "bundle in {nothing} (strata export --out {nothing} makes one)"),
    ("streaming process", "no registry", ["--registry", NOTHING, "--store", DEAD_STORE, "--broker", DEAD], {}, 1,
     "strata streaming process: error: no CURRENT pointer at {nothing}/edge-scorer/CURRENT: no edge-scorer "
     "bundle in {nothing} (strata export --out {nothing} makes one)"),
    # a store URL that is not one
    ("edge", "bad store", ["--registry", REGISTRY, "--store", "memcached://x", "--port", "0"], {}, 2,
     "strata edge: bad config: store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, valkey+cluster:// or 'none', got 'memcached://x'"),
    ("origin", "bad store", ["--registry", REGISTRY, "--store", "memcached://x", "--port", "0"], {}, 2,
     "strata origin: bad config: store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, valkey+cluster:// or 'none', got 'memcached://x'"),
    ("streaming serve", "bad store", ["--registry", REGISTRY, "--store", "memcached://x", "--broker", DEAD], {}, 2,
     "strata streaming serve: bad config: store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, "
     "valkey+cluster:// or 'none', got 'memcached://x' (config key 'streaming.store')"),
    ("streaming process", "bad store", ["--registry", REGISTRY, "--store", "memcached://x", "--broker", DEAD], {}, 2,
     "strata streaming process: bad config: store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, "
     "valkey+cluster:// or 'none', got 'memcached://x' (config key 'streaming.store')"),
    # --store none where a store is needed
    ("streaming serve", "store none", ["--registry", REGISTRY, "--store", "none", "--broker", DEAD, "--port", "0"],
     {}, 2, "strata streaming serve: bad config: streaming.store is 'none' but the tier-2 scorer "
     "reads sessions and counts from it (or set streaming.tier2.enabled false: the ingest API alone needs no "
     "store); give redis://host:port/db"),
    ("streaming process", "store none", ["--registry", REGISTRY, "--store", "none", "--broker", DEAD], {}, 2,
     "strata streaming process: bad config: streaming.store is 'none' but the stream processor "
     "writes session vectors, profiles and counts to it; give redis://host:port/db"),
]

# --store none where it works: the command serves (ready on /readyz), then stops cleanly on SIGTERM
SERVES_WITHOUT_STORE = [
    ("edge", ["--registry", REGISTRY, "--store", "none"], {}),
    ("origin", ["--registry", REGISTRY, "--store", "none"], {}),
    ("streaming serve", ["--registry", REGISTRY, "--store", "none", "--broker", DEAD], NO_TIER2),
]


def _fill(words: list[str], registry: Path, nothing: Path, busy: int) -> list[str]:
    return [w.replace(REGISTRY, str(registry)).replace(NOTHING, str(nothing)).replace(BUSY, str(busy))
            for w in words]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    return {**env, **extra, "COLUMNS": "200"}


@pytest.mark.parametrize(("command", "mistake", "flags", "env", "code", "line"), MISTAKES,
                         ids=[f"{c} / {m}" for c, m, *_ in MISTAKES])
def test_each_mistake_is_one_line_and_its_exit_code(command: str, mistake: str, flags: list[str],
                                                    env: dict[str, str], code: int, line: str, registry_dir: Path,
                                                    tmp_path: Path, busy_port: int) -> None:
    nothing = tmp_path / "empty-registry"
    nothing.mkdir()
    argv = [*strata_command(), *command.split(), *_fill(flags, registry_dir, nothing, busy_port)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=_env(env), cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"{command} / {mistake}: stderr was\n{proc.stderr}"
    assert proc.returncode == code, f"{command} / {mistake}: exit {proc.returncode}\n{proc.stderr}"
    expected = line.replace("{busy}", str(busy_port)).replace("{nothing}", str(nothing))
    head, _, tail = expected.partition("...")
    if tail:
        assert lines[0].startswith(head) and lines[0].endswith(tail), lines[0]
    else:
        assert lines[0] == expected


@pytest.mark.parametrize(("command", "flags", "env"), SERVES_WITHOUT_STORE, ids=[c for c, *_ in SERVES_WITHOUT_STORE])
def test_store_none_serves(command: str, flags: list[str], env: dict[str, str], registry_dir: Path,
                           tmp_path: Path) -> None:
    port = free_port()
    argv = [*strata_command(), *command.split(), *_fill(flags, registry_dir, tmp_path, 0), "--port", str(port)]
    proc = ManagedProcess(command, argv, ready_url=f"http://127.0.0.1:{port}/healthz", env=_env(env),
                          log_path=tmp_path / "out.log")
    proc.start(timeout_s=90)
    rc = proc.stop()
    assert rc in (0, -signal.SIGTERM), f"{command} exited with {rc}:\n{proc.output_tail()}"


def test_a_broker_that_is_down_is_one_log_line_per_try(registry_dir: Path, tmp_path: Path) -> None:
    """``streaming serve`` keeps serving and retrying (backing off); each try is one line naming the broker,
    and aiokafka's own line about each failed connect is passed once a minute (it used to log ~3 a second)."""
    port = free_port()
    argv = [*strata_command(), "streaming", "serve", "--registry", str(registry_dir), "--store", "none",
            "--broker", DEAD, "--port", str(port)]
    log = tmp_path / "out.log"
    proc = ManagedProcess("streaming", argv, ready_url=f"http://127.0.0.1:{port}/healthz", env=_env(NO_TIER2),
                          log_path=log)
    proc.start(timeout_s=90)
    try:
        for _ in range(300):                  # tries at 0, 0.5, 1.5, 3.5 s: wait for the fourth line
            if log.read_text().count("not reachable") >= 4:
                break
            time.sleep(0.1)
    finally:
        proc.stop()
    lines = log.read_text().splitlines()
    ours = [x for x in lines if '"logger":"strata.streaming.log"' in x]
    theirs = [x for x in lines if '"logger":"aiokafka' in x]
    assert len(ours) >= 4, "\n".join(lines)
    assert all(f"event log: broker {DEAD} not reachable (KafkaConnectionError: " in x for x in ours), ours
    assert len(theirs) <= 2, "\n".join(theirs)           # one per distinct message
