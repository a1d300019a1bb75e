"""Choose the calibration method: leave-one-source-out on the held-out part of realphoto-train.

    python -m training.calibration_select --run runs/best --photos ../shared/datasets/realphoto-train

For every method of training/calibration.py and every source of the held-out photos, T is fitted on the other
sources (their clean photos, and for the -augmented methods augmented variants of those photos) and the
class-balanced ECE15 of the left-out source's clean photos is measured. The method with the lowest mean over
sources (each source weighing the same) is the one to use. The run's folded temperature is multiplied back
out first, so the fits start from the uncalibrated logits. realphoto-dev is never read here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pipeline.images.preprocess import PreprocessConfig
from pipeline.inference.model import build_model
from training.finetune_photos import calibrate, held_out_arrays
from training.photoset import load_photos
from training.realphoto_split import split_photos
from training.report import CLASSES


def table(cal: dict) -> str:
    """A markdown table: method x left-out source (class-balanced ECE15), mean, pooled, T on all held-out."""
    cands = cal["candidates"]
    sources = list(next(iter(cands.values()))["loso"])
    short = [s.split("/")[0] for s in sources]
    ns = [next(iter(cands.values()))["loso"][s]["n"] for s in sources]
    head = "| method | " + " | ".join(f"{s} ({n})" for s, n in zip(short, ns)) + " | **mean** | pooled | T (all) |"
    rows = [head, "|---|" + "---:|" * (len(sources) + 3)]
    best = min(cands, key=lambda m: cands[m]["loso_balanced_ece15_mean"])
    for m, c in cands.items():
        mean = f"{c['loso_balanced_ece15_mean']:.3f}"
        rows.append(f"| {m} | " + " | ".join(f"{c['loso'][s]['ece15']:.3f}" for s in sources)
                    + f" | {'**' + mean + '**' if m == best else mean} | {c['loso_balanced_ece15_pooled']:.3f}"
                    f" | {c['temperature']:.3f} |")
    rows.append("")
    rows.append("T fitted on the other sources, per left-out source: " + "; ".join(
        f"{m}: " + " / ".join(f"{c['loso'][s]['temperature']:.2f}" for s in sources) for m, c in cands.items()))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Leave-one-source-out table of the calibration methods for a run.")
    p.add_argument("--run", type=Path, required=True, help="a finetune_photos output (model.pt, manifest.json)")
    p.add_argument("--photos", type=Path, default=Path("../shared/datasets/realphoto-train"))
    p.add_argument("--calibration-variants", type=int, default=8)
    p.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the calibration record here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = json.loads((args.run / "manifest.json").read_text())
    folded = float(manifest["training"]["calibration"]["temperature"])
    if args.seed is None:
        args.seed = int(manifest["training"].get("seed", 1))
    cfg = PreprocessConfig.from_dict(manifest["preprocess"])
    arch = manifest["arch"]
    model = build_model(arch["name"], arch["args"])
    model.load_state_dict(torch.load(args.run / "model.pt", map_location="cpu", weights_only=True))
    _, held = split_photos(load_photos(args.photos, CLASSES))
    arrays = held_out_arrays(held, cfg, args)
    _, cal, _ = calibrate(model, arrays, "heldout", scale=folded)
    print(f"### {args.run}: {len(held)} held-out photos, {cal['held_out_variants']} augmented variants; "
          f"folded T = {folded} multiplied back out")
    print(table(cal))
    if args.json:
        args.json.write_text(json.dumps(cal, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
