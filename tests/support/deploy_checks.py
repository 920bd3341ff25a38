"""Checks shared by the manifest tests (Kubernetes and Compose): what a container's command means to the
``strata`` CLI, which settings its environment gives, and which port it then listens on.

The CLI is read by introspection (the typer app as a click command tree), the settings by loading them the
way the process would (``load_settings`` under exactly the container's environment), so a renamed flag, a
misspelt ``STRATA_*`` name or a port that no longer matches the config fails here, not in production.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.main

from strata.deploy import cli
from strata.deploy.manifests import env_names
from strata.shared.config import StrataSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# tier (the command path) -> the setting holding the port it serves HTTP on
TIER_PORT = {("edge",): "edge.port", ("streaming", "serve"): "streaming.port", ("origin",): "origin.port"}


@dataclass(frozen=True)
class Invocation:
    path: tuple[str, ...]        # e.g. ("streaming", "process")
    params: dict[str, Any]       # the parsed options, by parameter name
    given: frozenset[str]        # options given on the command line (not defaults)


def parse_strata(args: Sequence[str]) -> Invocation:
    """Parse ``strata ARGS`` with the real CLI (no invocation); raises click's UsageError on a bad flag."""
    root = typer.main.get_command(cli.app)
    ctx = root.make_context("strata", list(args), resilient_parsing=True)
    cmd, rest, path = root, list(args), []
    while hasattr(cmd, "list_commands"):      # a group: the next word names a subcommand
        assert rest, f"'strata {' '.join(args)}' stops at a group ({' '.join(path) or 'strata'})"
        name = rest.pop(0)
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"'strata {' '.join(args)}': no command {name!r} under {' '.join(path) or 'strata'}"
        cmd, path = sub, [*path, name]
    sub_ctx = cmd.make_context(path[-1], rest, parent=ctx)
    given = frozenset(n for n in sub_ctx.params if sub_ctx.get_parameter_source(n).name == "COMMANDLINE")
    return Invocation(tuple(path), dict(sub_ctx.params), given)


def cli_envvars() -> set[str]:
    """Environment names the CLI itself reads (a flag's ``envvar``), besides the settings."""
    out: set[str] = set()

    def walk(cmd: Any) -> None:
        for p in getattr(cmd, "params", []):
            env = getattr(p, "envvar", None)
            out.update([env] if isinstance(env, str) else env or [])
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(None):
                walk(cmd.get_command(None, name))

    walk(typer.main.get_command(cli.app))
    return out


def known_env_names() -> set[str]:
    """Every ``STRATA_*`` name something reads: the settings' leaves, STRATA_CONFIG, the CLI's envvars."""
    return set(env_names()) | {"STRATA_CONFIG"} | cli_envvars()


def unknown_strata_env(names: Sequence[str] | set[str]) -> list[str]:
    known = known_env_names()
    return sorted(n for n in names if n.startswith("STRATA_") and n not in known)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as kustomize reads them (no quoting, ``#`` lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``env`` as the process's STRATA_* environment (other STRATA_* names removed) plus ``env``'s other
    names (PATH, ...); every name touched is restored after."""
    touched = {k for k in os.environ if k.startswith("STRATA_")} | set(env)
    saved = {k: os.environ[k] for k in touched if k in os.environ}
    for k in touched & set(os.environ):
        del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        for k in touched & set(os.environ):
            del os.environ[k]
        os.environ.update(saved)


def settings_under(env: Mapping[str, str]) -> StrataSettings:
    with environment(env):
        return load_settings()


def setting(settings: StrataSettings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def served_port(inv: Invocation, settings: StrataSettings) -> int:
    """The port the process of ``inv`` listens on under ``settings`` (a flag given wins, as in the CLI)."""
    if inv.path == ("streaming", "process"):
        assert inv.params["metrics_port"] is not None, "the processor serves /metrics only with --metrics-port"
        return inv.params["metrics_port"]
    if "port" in inv.given:
        return inv.params["port"]
    return setting(settings, TIER_PORT[inv.path])


def dockerfile_env(path: Path = DEPLOY / "Dockerfile") -> dict[str, str]:
    """The runtime stage's ``ENV k=v`` pairs (line continuations joined)."""
    text = path.read_text().replace("\\\n", " ")
    runtime = text.split(" AS runtime", 1)[1]
    out: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            out.update(dict(m.groups() for m in re.finditer(r"(\w+)=(\S+)", line[4:])))
    return out


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` with ``env`` (unset names: their default, else empty)."""
    env = env or {}

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3) or ""
        return env.get(name) or default

    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, value)
