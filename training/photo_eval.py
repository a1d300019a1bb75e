"""Score a fine-tuned run (its model.pt, calibrated, and the preprocessing it was trained with) on photos.

    python -m training.photo_eval --run runs/best --photos ../shared/datasets/realphoto-dev

Prints overall, per-class and per-source accuracy, ECE (15 bins) of the calibrated model (the temperature
is folded into model.pt) and of the uncalibrated one (T multiplied back out), and the largest confusions.
Use it on realphoto-dev only for the final report, never to choose.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline.images.preprocess import PreprocessConfig
from pipeline.inference.model import build_model
from training.calibration import ece, softmax
from training.finetune_photos import logits_of, photo_report
from training.photo_augment import prepare_clean
from training.photoset import load_photos
from training.report import CLASSES, confusion


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Accuracy and calibration of a fine-tuned run on a photo set.")
    p.add_argument("--run", type=Path, required=True, help="a finetune_photos output (model.pt, results.json)")
    p.add_argument("--photos", type=Path, required=True)
    p.add_argument("--arch-from", type=Path, default=Path("weights/manifest.json"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = json.loads((args.run / "results.json").read_text())
    cfg = PreprocessConfig.from_dict({**PreprocessConfig().to_dict(), **json.loads(res["args"]["preprocess"])})
    arch = json.loads(args.arch_from.read_text())["arch"]
    model = build_model(arch["name"], arch["args"])
    model.load_state_dict(torch.load(args.run / "model.pt", map_location="cpu", weights_only=True))
    photos = load_photos(args.photos, CLASSES)
    y = np.array([q.label for q in photos])
    src = np.array([q.source for q in photos])
    z = logits_of(model, prepare_clean(photos, cfg))
    t = float(res["calibration"]["temperature"])
    pred = z.argmax(1)
    rep = photo_report(y, pred, src)
    print(f"### {args.run} on {args.photos.name} (n={len(y)}), preprocess {res['args']['preprocess']}")
    for k, v in rep.items():
        n = int((y == CLASSES.index(k)).sum()) if k in CLASSES else (int((src == k[7:]).sum()) if k.startswith(
            "source ") else len(y))
        print(f"| {k} | {n} | {100 * v:.1f}% |")
    print(f"ECE15 calibrated (T={t:.3f} folded in) {ece(softmax(z), y):.4f}; "
          f"uncalibrated {ece(softmax(z * t), y):.4f}")
    cm = confusion(y, pred)
    np.fill_diagonal(cm, 0)
    pairs = sorted(((cm[i, j], i, j) for i in range(10) for j in range(10) if cm[i, j]), reverse=True)[:8]
    print("confusions: " + ", ".join(f"{CLASSES[i]}->{CLASSES[j]} {c}" for c, i, j in pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
