"""Configuration: defaults < YAML < STRATA_* env < overrides; bad keys and values name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strata.shared.config import StrataSettings, load_settings
from strata.shared.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STRATA_* from the outer environment."""
    for name in list(os.environ):
        if name.startswith("STRATA_"):
            monkeypatch.delenv(name)
    # setenv records "absent" so the value load_settings writes is removed at teardown
    monkeypatch.setenv("STRATA_CONFIG", "")
    monkeypatch.delenv("STRATA_CONFIG")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = load_settings()
    assert isinstance(s, StrataSettings)
    assert s.log_level == "INFO"
    e = s.edge
    assert (e.host, e.port, e.registry, e.model) == ("127.0.0.1", 8080, "registry", "edge-scorer")
    assert (e.max_body_bytes, e.pool_size, e.ort_threads) == (65_536, 200, 1)
    assert (e.bandit.n0, e.bandit.explore_budget, e.bandit.cold_prior, e.bandit.seed) == (1000.0, 0.2, 0.02, None)
    assert (e.cache.response_size, e.cache.response_ttl_s, e.cache.hour_bucket) == (50_000, 2.0, 6)
    assert e.store.url == "redis://127.0.0.1:6379/0" and e.store.timeout_ms == 3.0
    assert e.confidence.t_edge == 0.6
    assert "STRATA_CONFIG" not in os.environ


def test_sections_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.edge.port = 1  # type: ignore[misc]


def test_yaml_values_applied(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "log_level: DEBUG\nedge:\n  port: 9001\n  bandit:\n    n0: 35\n    seed: 4\n"
                           "  store:\n    url: none\n")
    s = load_settings(path)
    assert s.log_level == "DEBUG"
    assert s.edge.port == 9001
    assert s.edge.bandit.n0 == 35.0 and s.edge.bandit.seed == 4
    assert s.edge.bandit.explore_budget == 0.2   # untouched keys keep defaults
    assert s.edge.store.url == "none"
    # issue 6: loading settings must not write os.environ (it used to set STRATA_CONFIG here)
    assert "STRATA_CONFIG" not in os.environ


def test_yaml_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_CONFIG", str(_yaml(tmp_path, "edge:\n  pool_size: 50\n")))
    assert load_settings().edge.pool_size == 50


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(tmp_path, "edge:\n  bandit:\n    n0: 35\n    explore_budget: 0.1\n")
    monkeypatch.setenv("STRATA_EDGE__BANDIT__N0", "50")
    s = load_settings(path)
    assert s.edge.bandit.n0 == 50.0
    assert s.edge.bandit.explore_budget == 0.1   # YAML still applies to keys the env leaves alone


def test_overrides_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_LOG_LEVEL", "WARNING")
    assert load_settings().log_level == "WARNING"
    assert load_settings(log_level="ERROR").log_level == "ERROR"


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    assert load_settings(_yaml(tmp_path, "")).edge.port == 8080


@pytest.mark.parametrize(("text", "key"), [
    ("edge:\n  bogus: 1\n", "edge.bogus"),
    ("edge:\n  bandit:\n    nzero: 5\n", "edge.bandit.nzero"),
    ("verbose: true\n", "verbose"),
])
def test_unknown_yaml_key_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(_yaml(tmp_path, text))
    assert ei.value.field == key
    assert f"(config key '{key}')" in ei.value.reason
    assert "Extra inputs are not permitted" in ei.value.reason
    assert ei.value.to_dict()["error"]["code"] == "bad_config"


@pytest.mark.parametrize(("text", "key", "msg"), [
    ("edge:\n  port: 70000\n", "edge.port", "less than or equal to 65535"),
    ("edge:\n  port: eighty\n", "edge.port", "valid integer"),
    ("edge:\n  bandit:\n    explore_budget: 1.5\n", "edge.bandit.explore_budget", "less than or equal to 1"),
    ("edge:\n  bandit:\n    n0: 0\n", "edge.bandit.n0", "greater than 0"),
    ("edge:\n  cache:\n    hour_bucket: 25\n", "edge.cache.hour_bucket", "less than or equal to 24"),
    ("edge:\n  pool_size: 1001\n", "edge.pool_size", "less than or equal to 1000"),
])
def test_invalid_yaml_value_names_the_key(tmp_path: Path, text: str, key: str, msg: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(_yaml(tmp_path, text))
    assert ei.value.field == key
    assert msg in ei.value.reason and f"(config key '{key}')" in ei.value.reason


def test_invalid_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_EDGE__PORT", "70000")
    with pytest.raises(ConfigError) as ei:
        load_settings()
    assert ei.value.field == "edge.port"
    assert "less than or equal to 65535 (config key 'edge.port')" in ei.value.reason


def test_invalid_override_names_the_key() -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(edge={"port": -1})
    assert ei.value.field == "edge.port"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load_settings(missing)
    assert ei.value.field == "config"
    assert ei.value.reason == f"config file not found: {missing}"
    assert "STRATA_CONFIG" not in os.environ


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path)


def test_malformed_yaml_is_a_config_error(tmp_path: Path) -> None:
    # a YAML syntax error must reach the CLI as ConfigError ("bad config", exit 2), not a parser traceback
    path = _yaml(tmp_path, "edge:\n  port: [1\n")
    with pytest.raises(ConfigError) as ei:
        load_settings(path)
    assert str(path) in ei.value.reason


def test_all_zero_confidence_weights_are_refused(tmp_path: Path) -> None:
    # confidence() divides by the weight sum: all-zero weights would fail every request with ZeroDivisionError
    path = _yaml(tmp_path, "edge:\n  confidence:\n    w_session: 0\n    w_concentration: 0\n"
                           "    w_margin: 0\n    w_known: 0\n")
    with pytest.raises(ConfigError) as ei:
        load_settings(path)
    assert (ei.value.field or "").startswith("edge.confidence")


def test_router_section_takes_url_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_ROUTER__ORIGIN_URLS", '["http://10.0.0.5:8090/", "https://o2.example"]')
    router = load_settings(None).router
    assert router.origin_urls == ["http://10.0.0.5:8090", "https://o2.example"]
    assert router.streaming_urls == [] and router.mode == "sync"
    assert (router.deadline_ms.streaming, router.deadline_ms.origin, router.deadline_ms.explain) == (15.0, 60.0, 300.0)


def test_router_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(None, router={"streaming_urls": ["10.0.0.5:8090"]})
    assert ei.value.field == "router.streaming_urls"
    assert "must be http:// or https:// URLs" in ei.value.reason
