"""``STRATA_TEST_STORE`` picks the store the store-using tests run on (tests/support/cluster.py); a mistyped value
stops the run with the choices instead of silently testing the single node."""

from __future__ import annotations

import pytest

from tests.support.cluster import STORE_ENV, store_kind


@pytest.mark.parametrize(("value", "kind"), [(None, "valkey"), ("", "valkey"), ("valkey", "valkey"),
                                             ("cluster", "cluster"), (" Cluster ", "cluster")])
def test_the_switch_names_the_store(monkeypatch: pytest.MonkeyPatch, value: str | None, kind: str) -> None:
    if value is None:
        monkeypatch.delenv(STORE_ENV, raising=False)
    else:
        monkeypatch.setenv(STORE_ENV, value)
    assert store_kind() == kind


def test_an_unknown_store_is_a_usage_error_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_ENV, "clustre")
    with pytest.raises(pytest.UsageError) as ei:
        store_kind()
    assert str(ei.value) == "STRATA_TEST_STORE must be one of valkey, cluster, got 'clustre'"
