"""``STRATA_REQUIRE_VLLM=1`` makes a skipped ``vllm`` test fail the run; without it the skip stays a skip
and its reason is printed in a banner. Checked on a throwaway pytest run of the real hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = "from tests.vllm_gate import pytest_runtest_makereport, pytest_terminal_summary  # noqa: F401\n"
TESTS = '''
import pytest

@pytest.fixture
def server():
    pytest.skip("vLLM venv not built at /nowhere")

@pytest.mark.vllm
def test_needs_vllm(server):
    pass

def test_unrelated_skip():
    pytest.skip("not a vllm test")

def test_passes():
    pass
'''


def _run(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_x.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n    vllm: x\n")
    env = {k: v for k, v in os.environ.items() if k != "STRATA_REQUIRE_VLLM"}
    env["PYTHONPATH"] = str(ROOT)
    if require is not None:
        env["STRATA_REQUIRE_VLLM"] = require
    return subprocess.run([sys.executable, "-m", "pytest", "-q", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("require", [None, "0"])
def test_without_the_flag_a_vllm_skip_is_a_skip_with_a_loud_reason(tmp_path, require) -> None:
    out = _run(tmp_path, require)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 2 skipped" in out.stdout
    assert "real vLLM test NOT RUN" in out.stdout
    assert "1 vllm test(s) skipped: vLLM venv not built at /nowhere" in out.stdout


def test_with_the_flag_a_vllm_skip_fails_the_run_and_other_skips_stay(tmp_path) -> None:
    out = _run(tmp_path, "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STRATA_REQUIRE_VLLM=1 and the vLLM test was skipped: vLLM venv not built at /nowhere" in out.stdout
    assert "1 passed, 1 skipped, 1 error" in out.stdout
    assert "real vLLM test NOT RUN" not in out.stdout
