"""What a new user runs first, against a real ``strata edge`` (both HTTP servers, no store): README's
msgpack example with only what ``make run`` installs, ``candidates: []``, and ``/docs`` with no CDN."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from packaging.requirements import Requirement

from strata.deploy.local import ManagedProcess, free_port, strata_command
from strata.shared.models.bundle import ITEMS_FILE, read_current

README = Path(__file__).resolve().parents[2] / "README.md"
RUN_EXTRAS = ("train", "local")   # what `make run` installs: .[train,local]


@pytest.fixture(scope="module", params=["strata", "uvicorn"])
def edge_url(request, registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    argv = [*strata_command(), "edge", "--registry", str(registry_dir), "--port", str(port), "--store", "none",
            "--log-level", "WARNING", "--http", request.param]
    proc = ManagedProcess("edge", argv, ready_url=f"http://127.0.0.1:{port}/readyz",
                          log_path=tmp_path_factory.mktemp("edge") / "edge.log")
    proc.start(timeout_s=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("content-type", ""), resp.read()


def _readme_block(heading: str, lang: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    blocks = re.findall(rf"```{lang}\n(.*?)```", text[start:text.find("\n#", start + 1)], flags=re.S)
    assert len(blocks) == 1, f"README {heading!r} should hold one {lang} block"
    return blocks[0]


def _run_installed_modules() -> set[str]:
    """Top-level modules importable after `make run`: the standard library and the distributions strata
    requires without an extra or through the train/local extras."""
    wanted = set()
    for spec in md.requires("strata") or []:
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in RUN_EXTRAS):
            wanted.add(req.name.lower().replace("_", "-"))
    modules = {mod for mod, dists in md.packages_distributions().items()
               if any(d.lower().replace("_", "-") in wanted for d in dists)}
    return modules | set(sys.stdlib_module_names)


def _imports(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_readme_msgpack_example_needs_only_what_make_run_installs() -> None:
    imports = _imports(_readme_block("### msgpack", "python"))
    assert "msgpack" in imports
    assert imports <= _run_installed_modules(), f"not installed by `make run`: {imports - _run_installed_modules()}"


def test_readme_catalog_range_is_the_exported_one(registry_dir: Path) -> None:
    ids = pq.read_table(registry_dir / "edge-scorer" / read_current(registry_dir, "edge-scorer") / ITEMS_FILE,
                        columns=["item_id"]).column("item_id").to_pylist()
    assert f"(`{ids[0]}` to `{ids[-1]}`)" in README.read_text(encoding="utf-8")


def test_readme_msgpack_example_runs(edge_url: str) -> None:
    example = _readme_block("### msgpack", "python")
    assert "http://127.0.0.1:8080" in example
    proc = subprocess.run([sys.executable, "-c", example.replace("http://127.0.0.1:8080", edge_url)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    answer = ast.literal_eval(proc.stdout.strip())
    given = set(re.findall(r'"(SKU-\d+)"', example))
    assert len(given) == 4
    assert answer["unknown_candidates"] == 0     # the example's ids are real
    assert len(answer["items"]) == 3 and {it["item_id"] for it in answer["items"]} <= given
    assert answer["tier"] == "edge"


def test_empty_candidates_rank_the_cached_pool(edge_url: str) -> None:
    body = orjson.dumps({"user_id": "u1", "session_id": "first-run-empty", "k": 5, "candidates": [],
                         "context": {"channel": "web"}})
    request = urllib.request.Request(f"{edge_url}/v1/recommend", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer = orjson.loads(resp.read())
    assert len(answer["items"]) == 5
    assert answer["unknown_candidates"] == 0


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_edge(edge_url: str, page: str) -> None:
    status, ctype, body = _get(edge_url + page)
    assert status == 200 and ctype.startswith("text/html")
    html = body.decode()
    assert "//" not in html, f"{page} names another host (a CDN is unreachable from an offline PoP):\n{html}"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets), html
    for asset in assets:
        assert asset.startswith("/"), asset
        status, _, content = _get(edge_url + asset)
        assert status == 200 and len(content) > 0, asset
    spec = re.search(r"(?:url: '|spec-url=\")(/[^'\"]+)", html)
    assert spec is not None, html
    status, _, content = _get(edge_url + spec.group(1))
    assert status == 200 and orjson.loads(content)["info"]["title"] == "Strata edge"
