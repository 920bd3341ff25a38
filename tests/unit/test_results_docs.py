"""docs/benchmarks.md quotes the log of record: every results block is what ``strata.deploy.results_docs``
renders from its JSON under loadtest/results/, and every benchmark JSON there has a block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.deploy.results_docs import BLOCK, COMMAND, RENDERERS, render

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "loadtest" / "results"


def test_page_shows_what_the_json_holds() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert text == render(text, RESULTS), f"docs/benchmarks.md differs from loadtest/results/: run `{COMMAND}`"


def test_every_benchmark_json_has_a_block() -> None:
    shown = {m.group("name") for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))}
    assert shown == {p.name for p in RESULTS.glob("bench-*.json")} == set(RENDERERS)


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_each_block_names_command_date_and_machine(name: str) -> None:
    out = RENDERERS[name](name, json.loads((RESULTS / name).read_text(encoding="utf-8")))
    assert "Command: `strata bench" in out or "then `strata bench" in out
    assert "not recorded" not in out, f"{name} lacks its date or machine"


def test_a_changed_figure_shows_up(tmp_path: Path) -> None:
    name = "bench-streaming.json"
    data = json.loads((RESULTS / name).read_text(encoding="utf-8"))
    data["speedup_over_naive"] = 1.5
    (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    page = f"<!-- results: {name} -->\n<!-- end results -->\n"
    assert "| 1.50 | **missed** |" in render(page, tmp_path)
