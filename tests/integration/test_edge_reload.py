"""Hot reload: a new CURRENT is verified, loaded and swapped; a bad bundle leaves the old model live."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from strata.edge.node import EdgeNode
from strata.edge.reload import check_once
from strata.shared.config import load_settings


@pytest.fixture
def registry(tmp_path, registry_dir):
    dst = tmp_path / "registry"
    shutil.copytree(registry_dir, dst)
    return dst


def clone_version(registry, new: str):
    model = registry / "edge-scorer"
    old = (model / "CURRENT").read_text().strip()
    shutil.copytree(model / old, model / new)
    manifest = json.loads((model / new / "manifest.json").read_text())
    manifest["version"] = new
    (model / new / "manifest.json").write_text(json.dumps(manifest))
    return model / new


def service(registry) -> EdgeNode:
    svc = EdgeNode(load_settings(edge={"registry": str(registry), "store": {"url": "none"}}))
    svc.load_model()
    return svc


def test_new_current_is_swapped_in(registry):
    svc = service(registry)
    old = svc.ranker.version
    clone_version(registry, "9.9.9")
    (registry / "edge-scorer" / "CURRENT").write_text("9.9.9\n")
    assert asyncio.run(check_once(svc.registry_watch)) == "9.9.9"
    assert svc.ranker.version == "9.9.9" != old
    assert asyncio.run(check_once(svc.registry_watch)) is None      # unchanged pointer: nothing to do


def test_corrupt_bundle_is_refused_and_old_model_kept(registry):
    svc = service(registry)
    old = svc.ranker.version
    bad = clone_version(registry, "9.9.10")
    with open(bad / "model.onnx", "r+b") as f:           # flip bytes: checksum no longer matches
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    (registry / "edge-scorer" / "CURRENT").write_text("9.9.10\n")
    assert asyncio.run(check_once(svc.registry_watch)) is None
    assert svc.ranker.version == old
    assert svc.metrics.inst.counters[("reloads_total", ("refused",))] == 1
    assert asyncio.run(check_once(svc.registry_watch)) is None           # not retried on every poll
    assert svc.metrics.inst.counters[("reloads_total", ("refused",))] == 1


def test_missing_version_dir_keeps_old_model(registry):
    svc = service(registry)
    (registry / "edge-scorer" / "CURRENT").write_text("7.7.7\n")
    assert asyncio.run(check_once(svc.registry_watch)) is None
    assert svc.ranker.version != "7.7.7"


def test_garbage_pointer_keeps_old_model(registry):
    svc = service(registry)
    old = svc.ranker.version
    (registry / "edge-scorer" / "CURRENT").write_text("latest-please\n")
    assert asyncio.run(check_once(svc.registry_watch)) is None
    assert svc.ranker.version == old
