"""`make test`'s serial lane collects only the modules named in the Makefile's SERIAL_MODULES: every module with a
test marked ``timing`` (tests/conftest.py's TIMING_TESTS) or ``vllm`` (a ``pytest.mark.vllm`` in the code) must be
listed, and nothing else, or that lane would silently skip a test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import LONGEST_MODULES, TIMING_TESTS

ROOT = Path(__file__).resolve().parents[2]


def _serial_modules() -> set[str]:
    text = ROOT.joinpath("Makefile").read_text().replace("\\\n", " ")
    m = re.search(r"^SERIAL_MODULES\s*:=\s*(.+)$", text, re.M)
    assert m, "the Makefile defines no SERIAL_MODULES"
    return set(m.group(1).split())


def _marks_vllm(path: Path) -> bool:
    """``pytest.mark.vllm`` in the module's code (a decorator or ``pytestmark``), not in a string."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and node.attr == "vllm" and isinstance(node.value, ast.Attribute)
                and node.value.attr == "mark"):
            return True
    return False


def test_the_serial_lane_lists_exactly_the_modules_of_timing_and_vllm_tests() -> None:
    timing = {f"tests/{t.split('::')[0]}" for t in TIMING_TESTS}
    vllm = {p.relative_to(ROOT).as_posix() for p in ROOT.joinpath("tests").rglob("test_*.py")
            if p.name != Path(__file__).name and _marks_vllm(p)}
    assert _serial_modules() == timing | vllm


def test_a_string_naming_the_mark_is_not_a_mark(tmp_path: Path) -> None:
    code = tmp_path / "test_x.py"
    code.write_text('TESTS = """\n@pytest.mark.vllm\ndef test_a(): pass\n"""\n')
    assert not _marks_vllm(code)
    code.write_text("import pytest\n\npytestmark = [pytest.mark.vllm]\n")
    assert _marks_vllm(code)


def test_the_longest_modules_listed_to_start_first_exist_once_each() -> None:
    """A renamed module would silently fall back into the queue (tests/conftest.py's LONGEST_MODULES)."""
    assert len(set(LONGEST_MODULES)) == len(LONGEST_MODULES)
    assert [m for m in LONGEST_MODULES if not ROOT.joinpath("tests", m).is_file()] == []
