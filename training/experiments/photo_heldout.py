"""What the photo model kept of ImageNet's zero-shot knowledge, and what a blend with the CNN would give.

    python -m training.experiments.photo_heldout runs/photo-cache/heldout_logits.npz

Reads the held-out logits `training.photo_train` saves (chosen model and zero-shot head, held-out realphoto-train
and a Fashion-MNIST test sample as grey PNGs), scores the shipped CNN (weights/fmnist) on the same images, and
prints: per class, zero-shot against the chosen model; how many of the photos the zero-shot head got right the
chosen model keeps right; and accuracy of (1 - w) photo + w CNN probabilities for a few w. Held-out only.
"""
from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from training import data
from training.calibration import ece, softmax
from training.photoset import load_photos
from training.realphoto_split import split_photos
from training.report import CLASSES


def cnn_probs(photos_path: str, weights: str) -> tuple[np.ndarray, np.ndarray]:
    """The CNN's probabilities on the held-out photos and on the same Fashion-MNIST sample photo_train used."""
    from pipeline.images.preprocess import prepare
    from pipeline.inference.backends import load_backend
    from pipeline.inference.manifest import load_manifest

    m = load_manifest(weights)
    backend = load_backend("onnx", manifest=m, threads=1)
    _, held = split_photos(load_photos(photos_path, CLASSES))
    held_p = backend.predict(np.stack([prepare(p.data, m.preprocess) for p in held])[:, None])
    images, labels = data.load_split("test")
    rng = np.random.default_rng(5)  # photo_train's Fashion-MNIST test sample: the same draw
    pick = np.concatenate([rng.choice(np.flatnonzero(labels == c), 100, replace=False) for c in range(10)])
    pngs = []
    for i in pick:
        buf = io.BytesIO()
        Image.fromarray(images[i], "L").save(buf, "PNG")
        pngs.append(prepare(buf.getvalue(), m.preprocess))
    return held_p, backend.predict(np.stack(pngs)[:, None])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("logits")
    p.add_argument("--photos", default="../shared/datasets/realphoto-train")
    p.add_argument("--cnn", default="weights/fmnist")
    args = p.parse_args(argv)
    d = np.load(args.logits)
    y, src = d["held_y"], d["held_src"]
    chosen, zs = softmax(d["held"]), d["held_zero_shot"]
    pc, pz = chosen.argmax(1), zs.argmax(1)
    print("| class | n | zero-shot | chosen |\n|---|---:|---:|---:|")
    for c, name in enumerate(CLASSES):
        s = y == c
        print(f"| {name} | {s.sum()} | {(pz[s] == c).mean():.3f} | {(pc[s] == c).mean():.3f} |")
    right = pz == y
    print(f"\nzero-shot right on {right.sum()} of {len(y)}; the chosen model keeps {(pc[right] == y[right]).sum()} "
          f"of them ({(pc[right] == y[right]).mean():.3f}) and adds {((pc == y) & ~right).sum()}")
    worn = (src == "suki2691/ClothingClassifier")
    for c in (2, 4, 6):
        s = worn & (y == c)
        if s.any():
            print(f"worn {CLASSES[c]} ({s.sum()}): zero-shot {(pz[s] == c).mean():.2f}, chosen {(pc[s] == c).mean():.2f}")
    held_cnn, fm_cnn = cnn_probs(args.photos, args.cnn)
    fm = softmax(d["fm"])
    print("\n| w (CNN share) | held-out acc | held-out ECE | FM grey sample acc |\n|---:|---:|---:|---:|")
    for w in (0.0, 0.1, 0.2, 0.3, 0.5):
        h, f = (1 - w) * chosen + w * held_cnn, (1 - w) * fm + w * fm_cnn
        print(f"| {w:.1f} | {(h.argmax(1) == y).mean():.4f} | {ece(h, y):.4f} | {(f.argmax(1) == d['fm_y']).mean():.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
