"""The deployment's configuration, generated from ``shared/config.py`` (never written by hand).

Every leaf setting of ``StrataSettings`` becomes one ``STRATA_*`` environment name (sections joined by
``__``, as pydantic-settings reads them). Three files come out of it, all under ``deploy/k8s/base/``:

- ``strata.env``: the ``strata-env`` ConfigMap (kustomize ``configMapGenerator``; a content hash in its name,
  so a change rolls the Deployments). Every leaf is in it, at its default or at the production value of
  ``DEPLOY_VALUES``, with its description as a comment; settings whose default is ``None`` appear as
  comments (an empty env value would not parse as None), and the credentials listed in ``SECRET_PATHS``
  appear as comments naming the Secret that sets them.
- ``strata.yaml``: the ``guardrails`` section, which the tiers re-read while they run. It is a mounted file
  (``STRATA_CONFIG``), not environment: the environment outranks the YAML file, so a guardrail set in the
  environment could never be changed without a restart.
- ``secret.example.env``: the names the ``strata-secrets`` Secret must define (placeholder values).

``python -m strata.deploy.manifests`` rewrites them; ``--check`` exits 1 when a committed file is stale
(``tests/unit/test_deploy_manifests.py`` does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from strata.shared.config import StrataSettings

BASE_DIR = Path(__file__).parent / "k8s" / "base"
ENV_FILE = BASE_DIR / "strata.env"
GUARDRAILS_FILE = BASE_DIR / "strata.yaml"
SECRET_EXAMPLE_FILE = BASE_DIR / "secret.example.env"
CONFIG_MOUNT = "/etc/strata"                    # where the strata-config ConfigMap (strata.yaml) is mounted
SECRET_NAME = "strata-secrets"
FILE_SECTIONS = ("guardrails",)                 # re-read while running: a mounted YAML file, never env
ENV_PREFIX = StrataSettings.model_config["env_prefix"]
ENV_DELIMITER = StrataSettings.model_config["env_nested_delimiter"]

# Production values (the defaults are for one laptop). Region-specific endpoints are set again by each
# overlay (deploy/k8s/overlays/<region>/); these are the in-cluster names the base assumes.
DEPLOY_VALUES: dict[str, Any] = {
    "edge.host": "0.0.0.0",
    "edge.registry": "/registry",
    "edge.impressions.broker": "kafka:9092",
    "streaming.host": "0.0.0.0",
    "streaming.registry": "/registry",
    "streaming.broker": "kafka:9092",
    "streaming.topics.partitions": 4,
    "streaming.wait_replicas": 1,
    "origin.host": "0.0.0.0",
    "origin.registry": "/registry",
    "origin.vector_index.backend": "qdrant",
    "origin.vector_index.url": "http://qdrant:6333",
    "router.streaming_urls": ["http://strata-streaming:8090"],
    "router.origin_urls": ["http://strata-origin:8091"],
    "auth.enabled": True,                        # keys: the strata-keys ConfigMap, mounted (docs/security.md)
    "auth.keys_file": "/etc/strata-keys/keys.json",
}

# Settings that carry credentials (a store URL holds the Valkey password): set from the Secret, never the ConfigMap.
SECRET_PATHS: dict[str, str] = {
    "edge.store.url": "redis+cluster://:CHANGE-ME@valkey:6379",
    "streaming.store": "redis+cluster://:CHANGE-ME@valkey:6379",
    "origin.store.url": "redis+cluster://:CHANGE-ME@valkey:6379",
    "auth.impression_secret": "CHANGE-ME-to-at-least-32-random-characters",
}


@dataclass(frozen=True, slots=True)
class Leaf:
    path: str               # dotted config key, e.g. "edge.store.url"
    env: str                # its environment name, e.g. "STRATA_EDGE__STORE__URL"
    default: Any            # the default in shared/config.py (a nested section's own default, not its class's)
    description: str | None


def _fields(section: Any) -> dict[str, Any]:
    """The pydantic fields of a settings section (a model or a pydantic dataclass), or {} for a leaf type."""
    if isinstance(section, type) and issubclass(section, BaseModel):
        return section.model_fields
    if isinstance(section, type) and is_dataclass(section) and hasattr(section, "__pydantic_fields__"):
        return section.__pydantic_fields__
    return {}


def env_name(path: str) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in path.split("."))


def leaves(section: type = StrataSettings, value: Any = None, prefix: str = "") -> list[Leaf]:
    """Every leaf setting under ``section``, in declaration order, with the default it has there."""
    out: list[Leaf] = []
    for name, field in _fields(section).items():
        path = f"{prefix}{name}"
        default = getattr(value, name) if value is not None else field.get_default(call_default_factory=True)
        sub = type(default) if _fields(type(default)) else field.annotation
        if _fields(sub):
            out += leaves(sub, default, path + ".")
        else:
            out.append(Leaf(path, env_name(path), default, field.description))
    return out


def env_names() -> dict[str, str]:
    """Environment name -> config key, for every leaf setting."""
    return {leaf.env: leaf.path for leaf in leaves()}


def env_value(value: Any) -> str:
    """A setting as pydantic-settings reads it from the environment (complex values as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=list)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def render_env() -> str:
    known = {leaf.path for leaf in leaves()}
    unknown = sorted((set(DEPLOY_VALUES) | set(SECRET_PATHS)) - known)
    if unknown:
        raise ValueError(f"DEPLOY_VALUES/SECRET_PATHS name settings shared/config.py does not have: {unknown}")
    lines = ["# GENERATED by `python -m strata.deploy.manifests` from shared/config.py: do not edit.",
             "# Production values come from DEPLOY_VALUES in deploy/manifests.py; a region overrides keys in",
             "# its overlay (configMapGenerator behavior: merge). Comment lines are ignored by kustomize."]
    section = None
    for leaf in leaves():
        top = leaf.path.split(".")[0] if "." in leaf.path else "top level"
        if top in FILE_SECTIONS:
            continue
        if top != section:
            section = top
            lines += ["", f"# -- {top} " + "-" * (100 - len(top))]
        if leaf.description:
            lines.append(f"# {leaf.path}: {leaf.description}")
        if leaf.path in SECRET_PATHS:
            lines.append(f"# {leaf.env}: set from Secret {SECRET_NAME}")
            continue
        value = DEPLOY_VALUES.get(leaf.path, leaf.default)
        if value is None:
            lines.append(f"# {leaf.env}= (unset: None)")
        else:
            lines.append(f"{leaf.env}={env_value(value)}")
    return "\n".join(lines) + "\n"


def render_guardrails() -> str:
    defaults = {leaf.path.split(".", 1)[1]: _plain(leaf.default) for leaf in leaves()
                if leaf.path.split(".")[0] in FILE_SECTIONS}
    head = ("# GENERATED by `python -m strata.deploy.manifests` from shared/config.py (the guardrails section's\n"
            "# defaults). Mounted at /etc/strata/strata.yaml (STRATA_CONFIG); the tiers re-read it while they run.\n")
    return head + yaml.safe_dump({"guardrails": defaults}, sort_keys=False)


def render_secret_example() -> str:
    lines = [f"# The keys Secret {SECRET_NAME} must define (GENERATED; placeholder values). Create it with e.g.",
             f"#   kubectl -n strata create secret generic {SECRET_NAME} --from-env-file=secret.env"]
    lines += [f"{env_name(path)}={value}" for path, value in SECRET_PATHS.items()]
    return "\n".join(lines) + "\n"


GENERATED = {ENV_FILE: render_env, GUARDRAILS_FILE: render_guardrails, SECRET_EXAMPLE_FILE: render_secret_example}


def stale() -> list[Path]:
    """Generated files whose committed text differs from what shared/config.py gives now."""
    return [p for p, render in GENERATED.items() if not p.is_file() or p.read_text() != render()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m strata.deploy.manifests", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale; write nothing")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for p in bad:
            print(f"stale: {p} (run python -m strata.deploy.manifests)", file=sys.stderr)
        return 1 if bad else 0
    for path, render in GENERATED.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
