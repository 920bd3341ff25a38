"""The Kubernetes manifests (deploy/k8s): the ConfigMap generated from shared/config.py is current and complete,
every overlay renders (``kubectl kustomize``) and every object validates (``kubernetes-validate``, strict), and
the workloads agree with the CLI and the config: commands parse, ports are the configured ones, env names
exist, processor replicas equal the events topic's partitions, only the edge and the ingest are public."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from strata.deploy import manifests as M
from tests.support.deploy_checks import (
    DEPLOY,
    TIER_PORT,
    parse_strata,
    read_env_file,
    served_port,
    setting,
    settings_under,
    unknown_strata_env,
)

OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
WORKLOADS = {"edge", "ingest", "streaming", "processor", "origin"}


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the overlays (Debian: apt-get install kubectl)"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def deployments(overlay: str) -> dict[str, dict]:
    return {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in objects(overlay, "Deployment").values()}


def configmap_env(overlay: str) -> dict[str, str]:
    (cm,) = [o for name, o in objects(overlay, "ConfigMap").items() if name.startswith("strata-env")]
    return dict(cm["data"])


def secret_keys(overlay: str) -> set[str]:
    (sec,) = objects(overlay, "Secret").values()
    return set(sec["data"])


def container_env(overlay: str, component: str, guardrails: Path) -> dict[str, str]:
    """What the container's process sees: the image's ENV, the ConfigMap, the Secret's keys, its own env."""
    from tests.support.deploy_checks import dockerfile_env

    dep = deployments(overlay)[component]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = dict(dockerfile_env())
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            assert src["configMapRef"]["name"].startswith("strata-env")
            env.update(configmap_env(overlay))
        if "secretRef" in src:
            env.update({k: v for k, v in read_env_file(M.SECRET_EXAMPLE_FILE).items()})
    env.update({e["name"]: e["value"] for e in c.get("env", [])})
    if "STRATA_CONFIG" in env:
        assert env["STRATA_CONFIG"] == f"{M.CONFIG_MOUNT}/{M.GUARDRAILS_FILE.name}"
        env["STRATA_CONFIG"] = str(guardrails)
    return env


# -- the generated configuration ---------------------------------------------------------------------------

def test_generated_files_are_current() -> None:
    assert M.stale() == [], "run: python -m strata.deploy.manifests"


def test_every_setting_is_in_the_configmap_the_secret_or_the_mounted_file() -> None:
    text = M.ENV_FILE.read_text()
    in_env = set(read_env_file(M.ENV_FILE))
    commented = {line[2:].split("=")[0].split(":")[0] for line in text.splitlines() if line.startswith("# STRATA_")}
    secret = set(read_env_file(M.SECRET_EXAMPLE_FILE))
    guardrails = yaml.safe_load(M.GUARDRAILS_FILE.read_text())
    file_keys = {f"{top}.{k}" for top, section in guardrails.items() for k in section}
    for leaf in M.leaves():
        if leaf.path.split(".")[0] in M.FILE_SECTIONS:
            assert leaf.path in file_keys, leaf.path
        elif leaf.path in M.SECRET_PATHS:
            assert leaf.env in secret and leaf.env not in in_env, leaf.env
        elif leaf.default is None and leaf.path not in M.DEPLOY_VALUES:
            assert leaf.env in commented and leaf.env not in in_env, leaf.env
        else:
            assert leaf.env in in_env, f"{leaf.env} ({leaf.path}) missing from {M.ENV_FILE.name}"
    assert unknown_strata_env(in_env | secret) == []


def test_generated_environment_loads_to_the_deploy_values(tmp_path: Path) -> None:
    env = {**read_env_file(M.ENV_FILE), **read_env_file(M.SECRET_EXAMPLE_FILE),
           "STRATA_CONFIG": str(M.GUARDRAILS_FILE)}
    s = settings_under(env)
    for leaf in M.leaves():
        want = M.SECRET_PATHS.get(leaf.path, M.DEPLOY_VALUES.get(leaf.path, leaf.default))
        got = setting(s, leaf.path)
        if hasattr(got, "get_secret_value"):          # a SecretStr setting (auth.impression_secret)
            got = got.get_secret_value()
        if isinstance(want, list | tuple) or isinstance(got, tuple):
            got, want = list(got), list(want)
        assert got == want, f"{leaf.env}: loads as {got!r}, expected {want!r}"


def test_a_new_setting_makes_the_committed_configmap_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(M.DEPLOY_VALUES, "edge.pool_size", 123)
    assert M.ENV_FILE in M.stale()
    monkeypatch.setitem(M.DEPLOY_VALUES, "edge.no_such_key", 1)
    with pytest.raises(ValueError, match="edge.no_such_key"):
        M.render_env()


# -- the rendered overlays ---------------------------------------------------------------------------------

def test_there_are_two_regions() -> None:
    assert len(OVERLAYS) >= 2, OVERLAYS


@pytest.mark.slow
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(overlay: str) -> None:
    kinds = set()
    for obj in rendered(overlay):
        kinds.add(obj["kind"])
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "ConfigMap", "Secret"} <= kinds


def test_validation_catches_a_bad_manifest() -> None:
    dep = yaml.safe_load(yaml.safe_dump(deployments(OVERLAYS[0])["edge"]))
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_commands_ports_and_env_match_the_cli_and_config(overlay: str, tmp_path: Path) -> None:
    deps = deployments(overlay)
    assert set(deps) == WORKLOADS
    for component, dep in deps.items():
        spec = dep["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        assert c["command"][0] == "strata", component
        inv = parse_strata(c["command"][1:])
        env = container_env(overlay, component, M.GUARDRAILS_FILE)
        assert unknown_strata_env(set(env)) == [], component
        settings = settings_under(env)
        port = served_port(inv, settings)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if inv.path in TIER_PORT:
            assert ports == {"http": port}, component
            assert setting(settings, TIER_PORT[inv.path].replace("port", "host")) == "0.0.0.0", component
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                                ("startupProbe", "/healthz")):
                assert c[probe]["httpGet"] == {"path": path, "port": "http"}, (component, probe)
        else:
            assert inv.path == ("streaming", "process") and ports == {"metrics": port}
            assert setting(settings, "streaming.host") == "0.0.0.0"      # the metrics server binds it
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], component
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert {v["mountPath"] for v in c["volumeMounts"]} >= {"/registry", M.CONFIG_MOUNT}
        if component == "ingest":
            assert settings.streaming.tier2.enabled is False      # the public endpoint serves ingest only
        if component == "streaming":
            assert settings.streaming.tier2.enabled is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processor_replicas_equal_partitions(overlay: str) -> None:
    partitions = int(configmap_env(overlay)["STRATA_STREAMING__TOPICS__PARTITIONS"])
    assert deployments(overlay)["processor"]["spec"]["replicas"] == partitions
    names = {o["spec"]["scaleTargetRef"]["name"] for o in objects(overlay, "HorizontalPodAutoscaler").values()}
    assert "strata-processor" not in names        # more consumers than partitions would idle


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_budgets_and_services_point_at_workloads(overlay: str) -> None:
    deps = {d["metadata"]["name"]: d for d in deployments(overlay).values()}
    hpas = objects(overlay, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == set(deps) - {"strata-processor"}
    for h in hpas.values():
        assert 1 <= h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"]
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deps.items()}

    def selects(sel: dict) -> set[str]:
        return {n for n, lab in labels.items() if all(lab.get(k) == v for k, v in sel.items())}

    pdbs = objects(overlay, "PodDisruptionBudget")
    assert set().union(*(selects(p["spec"]["selector"]["matchLabels"]) for p in pdbs.values())) == set(deps)
    for svc in objects(overlay, "Service").values():
        (target,) = selects(svc["spec"]["selector"])
        port_names = {p["name"] for p in deps[target]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names, svc["metadata"]["name"]
    env = configmap_env(overlay)
    services = {n: s for n, s in objects(overlay, "Service").items()}
    for key, svc in (("STRATA_ROUTER__STREAMING_URLS", "strata-streaming"), ("STRATA_ROUTER__ORIGIN_URLS",
                                                                              "strata-origin")):
        (port,) = [p["port"] for p in services[svc]["spec"]["ports"]]
        assert f"http://{svc}:{port}" in env[key], key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_edge_and_the_ingest_are_reachable_from_outside(overlay: str) -> None:
    pols = objects(overlay, "NetworkPolicy")
    deny = [p for p in pols.values() if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny, "no default-deny ingress policy"
    public: set[str] = set()
    for p in pols.values():
        for rule in p["spec"].get("ingress", []):
            sources = rule.get("from")
            if not sources or any("ipBlock" in s for s in sources):    # from anywhere
                sel = p["spec"]["podSelector"]
                (expr,) = sel["matchExpressions"]
                assert expr["key"] == "app.kubernetes.io/component" and expr["operator"] == "In"
                public |= set(expr["values"])
    assert public == {"edge", "ingest"}
    public_services = {s["spec"]["selector"]["app.kubernetes.io/component"]
                       for s in objects(overlay, "Service").values() if s["spec"]["type"] != "ClusterIP"}
    assert public_services == {"edge", "ingest"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secrets_reach_every_workload(overlay: str) -> None:
    assert secret_keys(overlay) == {M.env_name(p) for p in M.SECRET_PATHS}
    assert unknown_strata_env(set(configmap_env(overlay))) == []
    (cfg,) = [o for n, o in objects(overlay, "ConfigMap").items() if n == "strata-config"]
    assert yaml.safe_load(cfg["data"][M.GUARDRAILS_FILE.name]) == yaml.safe_load(M.GUARDRAILS_FILE.read_text())
    for component, dep in deployments(overlay).items():
        spec = dep["spec"]["template"]["spec"]
        refs = {next(iter(s.values()))["name"] for s in spec["containers"][0]["envFrom"]}
        cm = [n for n in objects(overlay, "ConfigMap") if n.startswith("strata-env")]
        sec = list(objects(overlay, "Secret"))
        assert refs == {*cm, *sec}, component        # the hashed names kustomize generated
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["config"]["configMap"]["name"] == "strata-config"
