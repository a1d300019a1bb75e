"""The photo model's training: a dry run end to end (data, cache, LP, FT, WiSE, temperature, export), the
zero-shot head, and `fashion-batch train --model photo` fine-tuning the shipped photo model on a user's photos."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.inference.backends import BACKENDS, load_backend
from pipeline.inference.manifest import load_manifest
from tests.helpers import ROOT, garment_png
from training.photo_net import ZERO_SHOT, zero_shot_probs


@pytest.fixture(scope="module")
def my_photos(tmp_path_factory):
    """A user's labelled photos, one folder per class."""
    root = tmp_path_factory.mktemp("mine")
    for cls, kind in (("Trouser", "trouser"), ("Shirt", "shirt"), ("Bag", "bag")):
        (root / cls).mkdir()
        for i in range(6):
            (root / cls / f"{i}.png").write_bytes(garment_png(kind, (100 + 5 * i, 140)))
    return root


def test_zero_shot_head_sums_imagenet_classes_into_ours():
    # Given ImageNet logits that put all the mass on 'sweatshirt' (841)
    logits = np.full((1, 1000), -30.0)
    logits[0, 841] = 10.0
    # Then our Pullover gets it, and Shirt (no ImageNet class) never does
    p = zero_shot_probs(logits)
    assert p.argmax() == 2 and p[0, 6] == 0 and abs(p.sum() - 1) < 1e-6
    assert ZERO_SHOT[6] == []


def test_fashion_batch_train_model_photo_fine_tunes_the_shipped_photo_model(my_photos, fashion_dir, tmp_path):
    # When `fashion-batch train --model photo --photos` runs (a dry run), with no --resume
    out = tmp_path / "mine"
    done = subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "train", "--model", "photo", "--photos",
                           str(my_photos), "--data-dir", str(fashion_dir), "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # Then it started from the shipped photo model and exported a model of its own: every backend checksummed,
    # each serving (N, 10) probabilities for the model's own sample
    from pipeline.images.kinds import kind_of_config

    manifest = load_manifest(out)
    raw = manifest.raw
    assert raw["training"]["resume"].endswith("weights/photo")
    assert raw["arch"]["name"] == "efficientnet_lite0" and raw["preprocess"]["kind"] == "letterbox"
    assert raw["calibration"]["folded"] and raw["training"]["temperature"] > 0
    assert set(raw["accuracy"]["realphoto_train_heldout"]) == set(BACKENDS)
    assert raw["int8"]["chosen"]["bytes"] * 3 < raw["int8"]["fp32_onnx"]["bytes"]
    with np.load(out / "sample.npz") as z:
        x = kind_of_config(manifest.preprocess).sample_input(z["images"][:3], manifest.preprocess)
    for name in BACKENDS:
        probs = load_backend(name, manifest=manifest, threads=1).predict(x)
        assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)
