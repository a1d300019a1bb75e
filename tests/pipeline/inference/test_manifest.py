"""The weights manifest: reading it, and refusing files whose checksum does not match."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.images.preprocess import PreprocessConfig
from pipeline.inference.manifest import (
    WeightsError,
    load_manifest,
    sha256_file,
    verified_path,
)


def copy_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_manifest_loads_with_classes_arch_and_preprocessing(exported_weights):
    # Given an exported weights dir / When its manifest is loaded
    m = load_manifest(exported_weights)
    # Then it carries everything a loader needs
    assert len(m.classes) == 10 and m.classes[0] == "T-shirt/top" and m.classes[9] == "Ankle boot"
    assert m.arch["name"] and isinstance(m.arch["args"], dict)
    assert isinstance(m.preprocess, PreprocessConfig)
    assert set(m.files) >= {"eager", "torchscript", "onnx", "int8", "sample"}
    assert m.raw["format"] == 1


def test_verified_path_accepts_an_untouched_file(exported_weights):
    # Given untouched files / Then each verifies and the digest is the recorded one
    m = load_manifest(exported_weights)
    path = verified_path(m, "onnx")
    assert sha256_file(path) == m.files["onnx"]["sha256"]


def test_tampered_file_is_refused_with_both_digests_and_advice(exported_weights, tmp_path):
    # Given a weights file changed after export
    root = copy_weights(exported_weights, tmp_path / "w")
    m = load_manifest(root)
    target = root / m.files["int8"]["path"]
    target.write_bytes(target.read_bytes() + b"\x00")
    # When it is verified
    with pytest.raises(WeightsError) as err:
        verified_path(m, "int8")
    # Then the error names the file, the expected and the found digest, and what to do
    msg = str(err.value)
    assert target.name in msg and m.files["int8"]["sha256"] in msg and sha256_file(target) in msg
    assert "re-export" in msg


def test_missing_manifest_and_missing_file_are_clear_errors(exported_weights, tmp_path):
    # Given an empty directory / Then a WeightsError that says how to make weights
    with pytest.raises(WeightsError, match="training.train"):
        load_manifest(tmp_path)
    # Given a manifest whose onnx file was deleted / Then a WeightsError naming it
    root = copy_weights(exported_weights, tmp_path / "w")
    m = load_manifest(root)
    (root / m.files["onnx"]["path"]).unlink()
    with pytest.raises(WeightsError, match="missing"):
        verified_path(m, "onnx")
    with pytest.raises(WeightsError, match="lists no file"):
        verified_path(m, "tensorrt")


def test_manifest_with_unknown_format_is_refused(exported_weights, tmp_path):
    # Given a manifest from a future format
    root = copy_weights(exported_weights, tmp_path / "w")
    raw = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**raw, "format": 99}))
    # Then loading it fails loudly
    with pytest.raises(WeightsError, match="format"):
        load_manifest(root)
