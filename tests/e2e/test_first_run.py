"""What a new user runs first, against a real ``strata edge`` (both HTTP servers, no store): ``candidates: []``
and ``/docs`` with no CDN. The README's own examples run in ``tests/e2e/test_doc_examples.py``."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from strata.deploy.local import ManagedProcess, free_port, strata_command


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
