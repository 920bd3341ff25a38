"""``STRATA_REQUIRE_VLLM=1`` (CI) turns a skipped ``vllm`` test into a failure; elsewhere a skipped
``vllm`` test stays a skip and its reason is printed in a banner at the end of the run, so a developer
sees that the real-vLLM test did not run and why. Hooks imported by ``tests/conftest.py``."""

from __future__ import annotations

import os

import pytest

ENV = "STRATA_REQUIRE_VLLM"
_SKIPPED = pytest.StashKey[dict[str, str]]()


def vllm_required() -> bool:
    return os.environ.get(ENV, "") == "1"


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or item.get_closest_marker("vllm") is None or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if vllm_required():
        report.outcome = "failed"
        report.longrepr = f"{ENV}=1 and the vLLM test was skipped: {reason}"
    else:
        item.config.stash.setdefault(_SKIPPED, {})[item.nodeid] = reason


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED, {})
    if not skipped:
        return
    reasons = sorted(set(skipped.values()))
    terminalreporter.section("real vLLM test NOT RUN", sep="!", yellow=True, bold=True)
    terminalreporter.write_line(f"{len(skipped)} vllm test(s) skipped: " + "; ".join(reasons), yellow=True)
    terminalreporter.write_line(f"set {ENV}=1 to build the vLLM venv (cached) and run them; CI does.",
                                yellow=True)
