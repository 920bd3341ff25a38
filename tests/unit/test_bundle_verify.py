"""Bundle checksums and the CURRENT pointer, on a tiny hand-made bundle (no exporter needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from strata.shared.errors import BundleError
from strata.shared.models.bundle import (
    CURRENT_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    REQUIRED_FILES,
    read_current,
    sha256_file,
    verify_bundle,
)
from strata.shared.ranking.features import FEATURE_SPEC_VERSION


def _write_bundle(root: Path, extra: dict[str, bytes] | None = None, spec: str = FEATURE_SPEC_VERSION) -> Path:
    bundle = root / "edge-scorer" / "1.0.0"
    bundle.mkdir(parents=True)
    contents = {name: f"placeholder {name}\n".encode() for name in REQUIRED_FILES}
    contents.update(extra or {})
    for name, data in contents.items():
        (bundle / name).write_bytes(data)
    manifest = {
        "name": "edge-scorer", "version": "1.0.0", "feature_spec_version": spec,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
    }
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    return bundle


def _rewrite_manifest(bundle: Path, **changes: object) -> None:
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = tmp_path / "big"
    data = bytes(range(256)) * 9000   # spans more than one 1 MiB chunk
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()


def test_verify_ok_returns_manifest(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path)
    manifest = verify_bundle(bundle, FEATURE_SPEC_VERSION)
    assert manifest["version"] == "1.0.0"
    assert set(manifest["files"]) == set(REQUIRED_FILES)
    assert verify_bundle(str(bundle)) == manifest   # str path, no spec check


def test_verify_checks_optional_listed_files_too(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path, extra={"model.int8.onnx": b"int8"})
    verify_bundle(bundle)
    (bundle / "model.int8.onnx").write_bytes(b"INT8")
    with pytest.raises(BundleError, match="checksum mismatch for .*model.int8.onnx"):
        verify_bundle(bundle)


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_tampered_byte_is_checksum_mismatch(tmp_path: Path, name: str) -> None:
    bundle = _write_bundle(tmp_path)
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as ei:
        verify_bundle(bundle)
    assert ei.value.reason.startswith(f"checksum mismatch for {path}: manifest ")
    expected = json.loads((bundle / MANIFEST_FILE).read_text())["files"][name]
    assert f"manifest {expected[:12]}, file {sha256_file(path)[:12]}" in ei.value.reason
    assert ei.value.code == "bad_bundle"


def test_missing_listed_file(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path)
    (bundle / MODEL_FILE).unlink()
    with pytest.raises(BundleError) as ei:
        verify_bundle(bundle)
    assert ei.value.reason == f"{bundle / MODEL_FILE} is listed in the manifest but missing"


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_required_file_not_listed(tmp_path: Path, name: str) -> None:
    bundle = _write_bundle(tmp_path)
    files = json.loads((bundle / MANIFEST_FILE).read_text())["files"]
    del files[name]
    _rewrite_manifest(bundle, files=files)
    with pytest.raises(BundleError) as ei:
        verify_bundle(bundle)
    assert ei.value.reason == f"manifest of {bundle} does not list required file {name}"


def test_manifest_without_files(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path)
    _rewrite_manifest(bundle, files=None)
    with pytest.raises(BundleError, match="must be an object with a 'files' object"):
        verify_bundle(bundle)


def test_missing_manifest(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path)
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError) as ei:
        verify_bundle(bundle)
    assert ei.value.reason == f"missing {MANIFEST_FILE} in {bundle}"


def test_manifest_not_json(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path)
    (bundle / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest.json is not JSON: "):
        verify_bundle(bundle)


@pytest.mark.parametrize("text", ["[]", '"manifest"', "null", json.dumps({"files": list(REQUIRED_FILES)})],
                         ids=["list", "string", "null", "files-as-list"])
def test_manifest_of_the_wrong_shape_is_a_bundle_error(tmp_path: Path, text: str) -> None:
    # corrupt-but-parseable manifests must be refused like any corrupt bundle (reload only marks a version
    # bad on BundleError; anything else is retried and logged with a traceback on every poll)
    bundle = _write_bundle(tmp_path)
    (bundle / MANIFEST_FILE).write_text(text)
    with pytest.raises(BundleError):
        verify_bundle(bundle)


def test_wrong_feature_spec(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path, spec="edge-features/0")
    verify_bundle(bundle)   # checksums alone are fine
    with pytest.raises(BundleError) as ei:
        verify_bundle(bundle, FEATURE_SPEC_VERSION)
    assert ei.value.reason == f"bundle feature spec 'edge-features/0' != serving spec {FEATURE_SPEC_VERSION!r}"


def test_missing_feature_spec(tmp_path: Path) -> None:
    bundle = _write_bundle(tmp_path)
    _rewrite_manifest(bundle, feature_spec_version=None)
    with pytest.raises(BundleError, match="bundle feature spec None != serving spec"):
        verify_bundle(bundle, FEATURE_SPEC_VERSION)


# ---- CURRENT -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["1.0.0", "1.0.0\n", "  12.3.45 \n"])
def test_read_current(tmp_path: Path, text: str) -> None:
    (tmp_path / "edge-scorer").mkdir()
    (tmp_path / "edge-scorer" / CURRENT_FILE).write_text(text)
    assert read_current(tmp_path, "edge-scorer") == text.strip()
    assert read_current(str(tmp_path), "edge-scorer") == text.strip()


@pytest.mark.parametrize("text", ["", "latest", "1.0", "v1.0.0", "1.0.0-rc1", "../1.0.0", "1.0.0\n2.0.0"])
def test_read_current_bad_pointer(tmp_path: Path, text: str) -> None:
    (tmp_path / "edge-scorer").mkdir()
    path = tmp_path / "edge-scorer" / CURRENT_FILE
    path.write_text(text)
    with pytest.raises(BundleError) as ei:
        read_current(tmp_path, "edge-scorer")
    assert ei.value.field == "CURRENT"
    assert ei.value.reason == f"{path} names {text.strip()!r}, not a semver version"


def test_read_current_missing_pointer(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as ei:
        read_current(tmp_path, "edge-scorer")
    assert ei.value.field == "registry"
    assert ei.value.reason == (f"no CURRENT pointer at {tmp_path / 'edge-scorer' / CURRENT_FILE}: no edge-scorer "
                               f"bundle in {tmp_path} (strata export --out {tmp_path} makes one)")
