"""README's configuration example shows the real defaults: every key it names exists in the settings
and has exactly the value ``shared/config.py`` gives it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from strata.shared.config import StrataSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def _differences(shown: Any, default: Any, path: str = "") -> list[str]:
    if isinstance(shown, dict):
        if not isinstance(default, dict):
            return [f"{path}: README shows a section, the default is {default!r}"]
        out = []
        for key, value in shown.items():
            where = f"{path}.{key}" if path else key
            if key not in default:
                out.append(f"{where}: no such setting")
            else:
                out.extend(_differences(value, default[key], where))
        return out
    return [] if shown == default else [f"{path}: README shows {shown!r}, the default is {default!r}"]


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> dict:
    for name in [n for n in os.environ if n.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    return StrataSettings().model_dump(mode="json")


def test_readme_yaml_example_is_exactly_the_defaults(defaults: dict) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", _section("Configuration"), flags=re.S)
    assert blocks, "README's Configuration section has no yaml block"
    shown = yaml.safe_load(blocks[0])
    assert set(shown) == set(defaults), "the example should show every top-level section"
    assert _differences(shown, defaults) == []
