"""The experiment table: one markdown row per fine-tuning run (runs/*/results.json).

    python -m training.experiment_table runs/r0* runs/r1*
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from training.report import CLASSES

SHORT = ["Tsh", "Tro", "Pul", "Dre", "Coa", "San", "Shi", "Snk", "Bag", "Boo"]
DEFAULTS = {"steps": 600, "lr": 0.01, "fm_batch": 96, "photo_batch": 32, "fm_p_any": 0.3, "balance": 0.0,
            "class_weight": "", "photo_loss_weight": 1.0, "bn_eval": False, "distill": 0.0, "wise": 1.0,
            "variants": 12, "preprocess": "{}", "seed": 1, "label_smoothing": 0.1}


def row(run: Path) -> str:
    r = json.loads((run / "results.json").read_text())
    a = r["args"]
    changed = ", ".join(f"{k}={a[k]}" for k, v in DEFAULTS.items() if k in a and a[k] != v and k != "steps")
    h = r["held_out"]
    h.setdefault("macro", sum(h[c] for c in CLASSES if c in h) / sum(c in h for c in CLASSES))
    per = " | ".join(f"{100 * h.get(c, float('nan')):.0f}" for c in CLASSES)
    cal = r["calibration"]
    return (f"| {run.name} | {changed or 'defaults'} | {a['steps']} | {100 * h['overall']:.1f} | "
            f"{100 * h['macro']:.1f} | {per} | {100 * r['fashion_mnist_test']:.2f} | "
            f"{cal['temperature']:.2f} | {cal['ece15_before']:.3f} -> {cal['ece15_after']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    runs = [Path(p) for p in (sys.argv[1:] if argv is None else argv) if (Path(p) / "results.json").exists()]
    print("| run | changed (vs defaults) | steps | held-out | macro | " + " | ".join(SHORT)
          + " | FM test | T | ECE15 held-out |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(SHORT) + "---:|---:|---|")
    for run in sorted(runs):
        print(row(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
