"""Score weight interpolations between the resumed and a fine-tuned model (WiSE-FT) without retraining.

    python -m training.wise_sweep --run runs/r02 --alphas 0.5,0.7,0.85,1 [--preprocess '{"garment": true}']

For each alpha, theta = alpha * fine-tuned + (1 - alpha) * resumed; prints the held-out realphoto-train
accuracy (overall, class-balanced, per class) and Fashion-MNIST test accuracy. The run's model.pt must be
a fine_tune_photos output; the temperature it folded into the head (results.json) is multiplied back out.
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
from training import data
from training.finetune_photos import logits_of, photo_report
from training.photo_augment import cache_key, cached, prepare_clean
from training.photoset import load_photos
from training.realphoto_split import split_photos
from training.report import CLASSES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="WiSE-FT sweep between a resumed and a fine-tuned model.")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--resume", type=Path, default=Path("weights/model.pt"))
    p.add_argument("--alphas", default="0.5,0.7,0.85,1")
    p.add_argument("--photos", type=Path, default=Path("../shared/datasets/realphoto-train"))
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = json.loads((args.run / "results.json").read_text())
    cfg = PreprocessConfig.from_dict({**PreprocessConfig().to_dict(), **json.loads(res["args"]["preprocess"])})
    held = split_photos(load_photos(args.photos, CLASSES))[1]
    ho = cached(args.cache_dir / f"held-{cache_key(held, cfg, None, 1, 0)}.npz", lambda: {
        "x": prepare_clean(held, cfg), "y": np.array([q.label for q in held]),
        "source": np.array([q.source for q in held]), "name": np.array([q.name for q in held])})
    arch = json.loads((args.resume.parent / "manifest.json").read_text())["arch"]
    start = torch.load(args.resume, map_location="cpu", weights_only=True)
    tuned = torch.load(args.run / "model.pt", map_location="cpu", weights_only=True)
    t = float(res["calibration"]["temperature"])
    # finetune_photos always folds T into the head before saving: undo it before interpolating.
    tuned = {**tuned, "head.weight": tuned["head.weight"] * t, "head.bias": tuned["head.bias"] * t}
    test_x, test_y = data.load_split("test")
    xt = data.to_tensor_input(test_x)[:, 0]
    model = build_model(arch["name"], arch["args"])
    for a in (float(s) for s in args.alphas.split(",")):
        model.load_state_dict({k: (a * v + (1 - a) * start[k]) if v.is_floating_point() else v
                               for k, v in tuned.items()})
        rep = photo_report(ho["y"], logits_of(model, ho["x"]).argmax(1), ho["source"])
        fm = float((logits_of(model, xt).argmax(1) == test_y).mean())
        per = "  ".join(f"{k[:8]} {v:.2f}" for k, v in rep.items()
                        if not k.startswith("source") and k not in ("overall", "macro"))
        print(f"alpha {a:.2f}: held-out {rep['overall']:.4f} macro {rep['macro']:.4f}  FM test {fm:.4f}  | {per}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
