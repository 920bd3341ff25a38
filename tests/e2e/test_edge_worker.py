"""The CDN edge-worker client (``deploy/edge-worker``) under Node's own test runner, against a real ``strata edge``
process: msgpack to the edge, X-Request-ID forwarded, the edge's cache headers honoured, the static fallback on
a timeout. Skipped, with a banner saying so, only when ``node`` is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parents[2] / "deploy" / "edge-worker"


def test_edge_worker_node_tests_pass_against_a_running_edge(edge_node) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("=== node is not installed: the edge-worker's JavaScript tests (deploy/edge-worker, "
                    "node --test) did NOT run ===")
    proc = subprocess.run([node, "--test", "test/"], cwd=WORKER, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGE_URL": edge_node.url})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "# fail 0" in out and "# skipped 0" in out, out     # the real-edge tests ran, none was skipped
