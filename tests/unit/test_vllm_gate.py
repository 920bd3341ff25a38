"""``STRATA_REQUIRE_VLLM=1`` makes a skipped ``vllm`` test fail the run; without it the skip stays a skip
and its reason is printed in a banner. Checked on a throwaway pytest run of the real hooks (in-process, ``pytester``)."""

from __future__ import annotations

import pytest

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


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, require: str | None) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x=TESTS)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n    vllm: x\n")
    monkeypatch.delenv("STRATA_REQUIRE_VLLM", raising=False)
    if require is not None:
        monkeypatch.setenv("STRATA_REQUIRE_VLLM", require)
    return pytester.runpytest_inprocess("-q", "-p", "no:randomly")


@pytest.mark.parametrize("require", [None, "0"])
def test_without_the_flag_a_vllm_skip_is_a_skip_with_a_loud_reason(pytester, monkeypatch, require) -> None:
    out = _run(pytester, monkeypatch, require)
    text = out.stdout.str()
    assert out.ret == 0, text
    assert out.parseoutcomes() == {"passed": 1, "skipped": 2}, text
    assert "real vLLM test NOT RUN" in text
    assert "1 vllm test(s) skipped: vLLM venv not built at /nowhere" in text


def test_with_the_flag_a_vllm_skip_fails_the_run_and_other_skips_stay(pytester, monkeypatch) -> None:
    out = _run(pytester, monkeypatch, "1")
    text = out.stdout.str()
    assert out.ret == 1, text
    assert "STRATA_REQUIRE_VLLM=1 and the vLLM test was skipped: vLLM venv not built at /nowhere" in text
    assert out.parseoutcomes() == {"passed": 1, "skipped": 1, "errors": 1}, text
    assert "real vLLM test NOT RUN" not in text
