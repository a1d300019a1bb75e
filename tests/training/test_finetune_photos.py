"""The hold-out split, calibration helpers and the class-weight parser of the photo fine-tune."""
from __future__ import annotations

import numpy as np
import torch

from training.calibration import ece, fit_temperature, fold_temperature, softmax
from training.finetune_photos import class_weights
from training.realphoto_split import held_out_names


def test_split_is_deterministic_stratified_and_keeps_training_photos():
    items = [(f"{i:04x}.jpg", i % 3, "a" if i % 2 else "b") for i in range(120)] + [("solo.jpg", 9, "c")]
    held = held_out_names(items)
    assert held == held_out_names(list(reversed(items)))
    assert "solo.jpg" not in held  # a group of one is never held out
    for label in range(3):
        for src in "ab":
            group = [n for n, y, s in items if y == label and s == src]
            assert len([n for n in group if n in held]) == 5  # ceil(0.25 * 20)


def test_temperature_fit_recovers_a_known_scale_and_lowers_ece():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4000, 10)) * 2
    y = np.array([rng.choice(10, p=p) for p in softmax(true)])
    t = fit_temperature(true * 3, y)  # logits 3x too confident
    assert 2.6 < t < 3.4
    assert ece(softmax(true * 3 / t), y) < ece(softmax(true * 3), y)


def test_fold_temperature_divides_the_logits():
    head = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    before = head(x)
    fold_temperature(head, 2.0)
    assert torch.allclose(head(x), before / 2, atol=1e-6)


def test_class_weights_parse_names():
    w = class_weights("Pullover=2,coat=1.5")
    assert w[2] == 2 and w[4] == 1.5 and w.sum() == 8 + 3.5


def test_fashion_batch_train_with_photos_fine_tunes_and_exports(dry_run_weights, fashion_dir, tmp_path):
    # Given a user's labelled photos, one folder per class, and weights to start from
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT, garment_png

    for cls, kind in (("Trouser", "trouser"), ("Shirt", "shirt")):
        (tmp_path / "mine" / cls).mkdir(parents=True)
        for i in range(8):
            (tmp_path / "mine" / cls / f"{i}.png").write_bytes(garment_png(kind, (100 + 5 * i, 140)))
    out = tmp_path / "mine-weights"
    # When `fashion-batch train --photos` runs (a dry run: a few steps, a quick export)
    done = subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "train", "--photos", str(tmp_path / "mine"),
                           "--resume", str(dry_run_weights / "model.pt"), "--data-dir", str(fashion_dir),
                           "--dry-run", "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    # Then a weights folder with every backend comes out, its manifest recording the photo set and calibration
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"eager", "torchscript", "onnx", "int8"} <= set(manifest["files"])
    training = manifest["training"]
    assert training["photo_sets"][0]["path"] == str(tmp_path / "mine")
    assert training["photo_sets"][0]["train_photos"] + training["photo_sets"][0]["held_out_photos"] == 16
    assert "temperature" in training["calibration"] and "resumed_from" in training
    calibration = training["calibration"]
    assert calibration["method"] == "heldout" and calibration["held_out_variants"] > 0
    assert set(calibration["candidates"]) == {"heldout", "balanced", "balanced-augmented", "balanced-source",
                                              "balanced-source-augmented", "per-source", "per-source-augmented"}
