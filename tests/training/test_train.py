"""training.train: the dry run (one batch, quick export) and the data loading it relies on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from training import data


def test_dry_run_trains_one_batch_and_exports_every_backend(dry_run_weights):
    # Given the dry run has finished (fixture) / Then the weights dir is complete and self-describing
    manifest = json.loads((dry_run_weights / "manifest.json").read_text())
    for name in ("eager", "torchscript", "onnx", "int8", "sample"):
        assert (dry_run_weights / manifest["files"][name]["path"]).is_file()
    assert manifest["training"]["command"].startswith("python -m training.train")
    assert manifest["arch"]["args"]["channels"] == [8, 16, 32]  # --channels reached the model and the manifest
    assert manifest["arch"]["args"]["mirror"] is True  # inference averages each image with its mirror by default
    assert set(manifest["accuracy"]["fashion_mnist_test_first500"]) == {"eager", "torchscript", "onnx", "int8"}
    for report in ("training_curves.png", "confusion_matrix.png", "per_class_accuracy.md"):
        assert (dry_run_weights / report).stat().st_size > 0


def test_data_is_read_from_the_directory_given(fashion_dir):
    # Given IDX files / When read / Then images and labels line up
    x, y = data.load_split("train", fashion_dir)
    assert x.shape == (200, 28, 28) and x.dtype == np.uint8 and y.shape == (200,)


def test_missing_data_says_how_to_get_it_and_downloads_nothing(tmp_path, monkeypatch):
    # Given no data anywhere / Then a clear error, not a download
    monkeypatch.delenv("FB_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="--download"):
        data.load_split("train", tmp_path)


def test_split_is_deterministic_and_disjoint():
    a_tr, a_va = data.split_train_val(100, 10, seed=3)
    b_tr, b_va = data.split_train_val(100, 10, seed=3)
    assert (a_tr == b_tr).all() and (a_va == b_va).all()
    assert not set(a_tr) & set(a_va) and len(a_tr) + len(a_va) == 100
