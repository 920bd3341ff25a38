"""The marker lists in ``tests/conftest.py`` name tests that exist: a renamed test must not silently fall
out of ``slow``/``timing`` (and into ``make test-fast`` or the parallel pass)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import conftest

TESTS = Path(conftest.__file__).parent


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


@pytest.mark.parametrize("module", sorted(conftest.SLOW_MODULES | conftest.STORE_MODULES))
def test_every_slow_module_exists(module: str) -> None:
    assert (TESTS / module).is_file(), module


@pytest.mark.parametrize("test", sorted(conftest.SLOW_TESTS | conftest.TIMING_TESTS))
def test_every_listed_test_exists(test: str) -> None:
    module, name = test.split("::")
    assert name in _functions(TESTS / module), test
