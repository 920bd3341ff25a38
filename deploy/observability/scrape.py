"""Prometheus scrape configuration for Strata: one job per tier.

    python -m strata.deploy.observability.scrape --endpoints-file endpoints.json --processor HOST:PORT \\
        [--interval 15s] [--out prometheus.yaml]

``deploy/observability/prometheus.yaml`` is the shipped configuration for the default ports (edge 8080,
streaming service 8090, origin 8091, stream processor ``--metrics-port 9108``); this module writes one for the
addresses ``strata up`` printed (its endpoints file names the edge, the streaming service and the origin; the
processor's metrics address is in its table). Every job is ``strata-<tier>`` and every target carries a
``tier`` label: the rules (``strata-rules.yaml``) and the dashboard rely on both.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import yaml

from strata.deploy.observability import emit

HERE = Path(__file__).parent
CONFIG_FILE = HERE / "prometheus.yaml"
JOBS = ("edge", "streaming", "origin", "processor")
DEFAULT_TARGETS = {"edge": ["127.0.0.1:8080"], "streaming": ["127.0.0.1:8090"], "origin": ["127.0.0.1:8091"],
                   "processor": ["127.0.0.1:9108"]}


def host_port(url: str) -> str:
    """``http://h:p`` or ``h:p`` -> ``h:p``."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    return parsed.netloc


def config(targets: Mapping[str, list[str]], *, interval: str = "15s", evaluation: str | None = None,
           rule_files: list[str] | None = None, timeout: str | None = None) -> dict:
    jobs = []
    for tier in JOBS:
        if not targets.get(tier):
            continue
        job = {"job_name": f"strata-{tier}", "metrics_path": "/metrics",
               "static_configs": [{"targets": list(targets[tier]), "labels": {"tier": tier}}]}
        if timeout:
            job["scrape_timeout"] = timeout
        jobs.append(job)
    return {"global": {"scrape_interval": interval, "evaluation_interval": evaluation or interval},
            "rule_files": rule_files if rule_files is not None else ["strata-rules.yaml"],
            "scrape_configs": jobs}


def from_endpoints(path: Path, processor: str | None) -> dict[str, list[str]]:
    data = json.loads(Path(path).read_text())
    out = {k: [host_port(data[k])] for k in ("edge", "streaming", "origin") if data.get(k)}
    if processor:
        out["processor"] = [host_port(processor)]
    return out


def render(cfg: dict, head: str = "") -> str:
    return head + yaml.safe_dump(cfg, sort_keys=False, width=200)


SHIPPED_HEAD = """\
# Prometheus scrape configuration for Strata (default ports; one job per tier, a `tier` label on each target).
# Many nodes: list them under targets, or replace static_configs with file_sd_configs / kubernetes_sd_configs
# keeping the job names (strata-edge, strata-streaming, strata-origin, strata-processor) and the tier label.
# For the addresses `strata up` printed: python -m strata.deploy.observability.scrape --help
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints-file", type=Path, default=None, help="the JSON strata up writes")
    ap.add_argument("--processor", default=None, help="the stream processor's metrics HOST:PORT")
    ap.add_argument("--interval", default="15s")
    ap.add_argument("--rules", default=str(HERE / "strata-rules.yaml"), help="rule file to load")
    ap.add_argument("--out", type=Path, default=None, help="default: print")
    args = ap.parse_args(argv)
    targets = from_endpoints(args.endpoints_file, args.processor) if args.endpoints_file else DEFAULT_TARGETS
    text = render(config(targets, interval=args.interval, rule_files=[args.rules]))
    return emit(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
