"""docs/configuration.md is generated from the settings models: the committed page is what the generator
renders, its YAML block is a config file the loader accepts and that changes nothing, and every key the
settings have is on the page with a description."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from strata.deploy.config_docs import COMMAND, keys, render
from strata.shared.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def no_strata_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("STRATA_")]:
        monkeypatch.delenv(name)


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and prefix.count(".") < 8 and not prefix.endswith(("slots.", "weights.")):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def test_committed_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), f"docs/configuration.md is stale: run `{COMMAND}`"


def test_yaml_block_is_a_config_file_that_changes_nothing(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1
    path = tmp_path / "defaults.yaml"
    path.write_text(blocks[0], encoding="utf-8")
    assert load_settings(path).model_dump(mode="json") == load_settings().model_dump(mode="json")


def test_every_setting_is_on_the_page_with_its_real_default() -> None:
    defaults = _leaves(load_settings().model_dump(mode="json"))
    shown = {k.path: k.default for k in keys()}
    assert shown == defaults


def test_every_key_says_what_it_does() -> None:
    assert [k.path for k in keys() if not k.description] == []
