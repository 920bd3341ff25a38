"""The ``streaming`` config section: defaults, env overrides, and refusals that name the key."""

from __future__ import annotations

import pytest

from strata.shared.config import load_settings
from strata.shared.errors import ConfigError


def test_defaults_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings().streaming
    assert (s.port, s.broker, s.topics.events, s.topics.dead_letter, s.topics.triggers) == (
        8090, "127.0.0.1:9092", "events", "events.dlq", "triggers")
    assert s.fetch_max_wait_ms == 20 and s.session.half_life_s == 600.0
    monkeypatch.setenv("STRATA_STREAMING__TOPICS__PARTITIONS", "8")
    monkeypatch.setenv("STRATA_STREAMING__SESSION__HALF_LIFE_S", "30")
    s = load_settings().streaming
    assert s.topics.partitions == 8 and s.session.half_life_s == 30.0


@pytest.mark.parametrize(("overrides", "key", "message"), [
    ({"port": 70000}, "streaming.port", "less than or equal to 65535"),
    ({"topics": {"partitions": 0}}, "streaming.topics.partitions", "greater than or equal to 1"),
    ({"session": {"half_life_s": 0}}, "streaming.session.half_life_s", "greater than 0"),
    ({"max_events": 20_000}, "streaming.max_events", "less than or equal to 10000"),
    ({"brokers": "x"}, "streaming.brokers", "Extra inputs are not permitted"),
])
def test_bad_values_name_the_key(overrides: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(streaming=overrides)
    assert ei.value.field == key and message in ei.value.reason
