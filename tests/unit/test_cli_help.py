"""``strata ... --help``: every command's text is rendered as written (no raw markup, nothing eaten by the
markup parser), and ``strata edge --help`` shows the defaults of ``shared/config.py`` while a flag still
overrides the config file and env only when it is given."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

import strata.edge.server
import strata.shared.serving.logs
from strata.deploy import cli
from strata.shared.config import EdgeSettings, ImpressionSettings, StoreSettings, StrataSettings
from strata.shared.serving import listen as listen_address

runner = CliRunner()
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}   # no wrapping inside the option table


def _commands(group, path: tuple[str, ...] = ()):
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(cli.app)))


def _flat(text: str) -> str:
    """Whitespace collapsed, and a word click's wrapping broke after a hyphen ("two-\\n tower") joined."""
    return " ".join(re.sub(r"-\n\s+", "-", re.sub(r"[│╭╮╰╯─]", " ", text)).split())


def _help(*path: str) -> str:
    result = runner.invoke(cli.app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_checked() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert names >= {"", "export", "edge", "demo", "eval", "bench", "bench edge"}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "strata" for p, _ in COMMANDS])
def test_help_renders_every_text_as_written(path: tuple[str, ...], command) -> None:
    out = _help(*path)
    assert "`" not in out, f"raw markup in 'strata {' '.join(path)} --help':\n{out}"
    texts = [command.help or ""] + [p.help for p in command.params if getattr(p, "help", None)]
    flat = _flat(out)
    for text in texts:
        assert _flat(text) in flat, f"{text!r} is not shown as written in:\n{out}"
    for name, sub in getattr(command, "commands", {}).items():     # a group lists its commands' first words
        assert f" {name} {' '.join(sub.help.split()[:3])}" in flat, f"{name} is not listed in:\n{out}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "strata" for p, _ in COMMANDS])
def test_flags_show_no_value_type(path: tuple[str, ...], command) -> None:
    """A flag (--once, --int8/--no-int8, --help) takes no value: no "<bool>" after it."""
    out = _help(*path)
    assert "<bool>" not in out and "BOOLEAN" not in out, out


@pytest.mark.parametrize(("flag", "default"), [
    ("--port", EdgeSettings.model_fields["port"].default),
    ("--host", EdgeSettings.model_fields["host"].default),
    ("--registry", EdgeSettings.model_fields["registry"].default),
    ("--store", StoreSettings.model_fields["url"].default),
    ("--http", EdgeSettings.model_fields["http"].default),
    ("--broker", ImpressionSettings.model_fields["broker"].default),
    ("--log-level", StrataSettings.model_fields["log_level"].default),
])
def test_edge_help_shows_the_settings_defaults(flag: str, default: object) -> None:
    flat = _flat(_help("edge"))
    row = flat[flat.index(f" {flag} "):].split(" --", 2)[1]      # the flag's row, up to the next flag
    assert f"default: {default}]" in row, row


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list:
    """Run ``strata edge`` in-process up to the server: the settings it would serve with are recorded."""
    seen: list = []
    monkeypatch.setattr(strata.edge.server, "run_edge", lambda settings, source=None: seen.append(settings))
    monkeypatch.setattr(listen_address, "check_listen_address", lambda host, port, http: None)
    monkeypatch.setattr(strata.shared.serving.logs, "configure_logging", lambda *a, **k: None)
    return seen


def test_edge_without_flags_takes_env_then_defaults(started: list) -> None:
    env = {"STRATA_EDGE__PORT": "9001", "STRATA_EDGE__HTTP": "uvicorn", "STRATA_LOG_LEVEL": "ERROR",
           "STRATA_CONFIG": ""}
    result = runner.invoke(cli.app, ["edge", "--store", "none"], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.edge.port, settings.edge.http, settings.log_level) == (9001, "uvicorn", "ERROR")
    assert settings.edge.store.url == "none"
    assert settings.edge.host == EdgeSettings.model_fields["host"].default
    assert settings.edge.registry == EdgeSettings.model_fields["registry"].default


def test_edge_flags_given_win_over_env(started: list) -> None:
    env = {"STRATA_EDGE__PORT": "9001", "STRATA_EDGE__HOST": "127.0.0.2", "STRATA_CONFIG": ""}
    result = runner.invoke(cli.app, ["edge", "--port", "9002", "--http", "uvicorn"], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.edge.port, settings.edge.host, settings.edge.http) == (9002, "127.0.0.2", "uvicorn")


def test_edge_broker_flag_env_and_config(started: list, tmp_path) -> None:
    """--broker > STRATA_BROKER > config (edge.impressions.broker) > the default, none."""
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("edge:\n  impressions:\n    broker: 127.0.0.1:9300\n")
    base = {"STRATA_CONFIG": ""}
    assert runner.invoke(cli.app, ["edge"], env=base).exit_code == 0
    assert runner.invoke(cli.app, ["edge", "--config", str(cfg)], env=base).exit_code == 0
    assert runner.invoke(cli.app, ["edge", "--config", str(cfg)], env={**base, "STRATA_BROKER": "10.0.0.1:9092"}).exit_code == 0
    result = runner.invoke(cli.app, ["edge", "--broker", "none"], env={**base, "STRATA_BROKER": "10.0.0.1:9092"})
    assert result.exit_code == 0, result.output
    assert [s.edge.impressions.broker for s in started] == ["none", "127.0.0.1:9300", "10.0.0.1:9092", "none"]
