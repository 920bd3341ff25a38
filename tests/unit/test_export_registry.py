"""Registry writer pieces: version resolution, atomic CURRENT, staging cleanup, pool ordering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from strata.model_export import registry
from strata.shared.errors import BundleError
from strata.shared.models.bundle import read_current


def test_first_version_is_1_0_0(tmp_path: Path) -> None:
    assert registry.resolve_version(tmp_path / "edge-scorer", None) == "1.0.0"


def test_next_patch_uses_numeric_semver_order_and_ignores_other_entries(tmp_path: Path) -> None:
    for name in ("1.0.0", "1.2.3", "1.10.0", "1.9.9", ".staging-2.0.0-abc", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "9.9.9").write_text("a file, not a bundle")
    assert registry.existing_versions(tmp_path) == ["1.0.0", "1.2.3", "1.9.9", "1.10.0"]
    assert registry.resolve_version(tmp_path, None) == "1.10.1"


@pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "1.0.0-rc1", "", "1..0"])
def test_malformed_version_is_refused_with_the_field(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BundleError, match="must look like X.Y.Z") as info:
        registry.resolve_version(tmp_path, bad)
    assert info.value.field == "version"


def test_existing_version_is_immutable(tmp_path: Path) -> None:
    (tmp_path / "1.0.0").mkdir()
    with pytest.raises(BundleError, match="already exists"):
        registry.resolve_version(tmp_path, "1.0.0")
    assert registry.resolve_version(tmp_path, "3.1.4") == "3.1.4"


def test_staging_is_removed_when_the_build_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), registry.staged_bundle(tmp_path, "1.0.0") as staging:
        (staging / "model.onnx").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_promote_moves_bundle_and_writes_current(tmp_path: Path) -> None:
    with registry.staged_bundle(tmp_path / "m", "1.0.0") as staging:
        (staging / "model.onnx").write_bytes(b"x")
        final = registry.promote(staging, tmp_path / "m", "1.0.0")
    assert final == tmp_path / "m" / "1.0.0" and (final / "model.onnx").read_bytes() == b"x"
    assert read_current(tmp_path, "m") == "1.0.0"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1.0.0", "CURRENT"]
    assert (final.stat().st_mode & 0o777) == 0o755
    assert ((tmp_path / "m" / "CURRENT").stat().st_mode & 0o777) == 0o644


def test_promote_refuses_to_overwrite_a_version(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "1.0.0").mkdir(parents=True)
    (root / "1.0.0" / "model.onnx").write_bytes(b"old")
    registry.write_current(root, "1.0.0")
    with pytest.raises(BundleError, match="cannot move bundle"), registry.staged_bundle(root, "1.0.0") as staging:
        (staging / "model.onnx").write_bytes(b"new")
        registry.promote(staging, root, "1.0.0")
    assert (root / "1.0.0" / "model.onnx").read_bytes() == b"old"
    assert sorted(p.name for p in root.iterdir()) == ["1.0.0", "CURRENT"]


def test_top_pools_order_by_segment_then_overall_then_catalog() -> None:
    ids = np.array(["a", "b", "c", "d", "e"])
    overall = np.array([5, 1, 5, 9, 0])
    web = np.array([0, 2, 2, 0, 0])
    pools = registry.top_pools(ids, overall, {"web": web}, size=4)
    assert pools == {"web": ["c", "b", "d", "a"], "default": ["d", "a", "c", "b"]}
