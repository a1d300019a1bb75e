"""Evaluate every backend on Fashion-MNIST test and on a labelled folder or ZIP of photos.

    python -m training.evaluate                                     # Fashion-MNIST test, all backends
    python -m training.evaluate --photos ../shared/datasets/realphoto-dev --naive --via-prepare
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from pipeline.images.imaging import ImageError, decode_image
from pipeline.images.preprocess import PreprocessConfig, prepare, to_batch
from pipeline.inference.backends import BACKENDS, load_backend
from pipeline.inference.manifest import load_manifest
from pipeline.settings import load_settings
from training import data, report
from training.photoset import Photo, load_photos


def predict_all(backend, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Labels predicted for a (N,1,28,28) batch, in chunks."""
    return np.concatenate([backend.predict(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def naive_input(data_bytes: bytes, cfg: PreprocessConfig) -> np.ndarray:
    """The baseline this project replaced: grey, squash to 28x28, normalize (no polarity, no crop)."""
    img = decode_image(data_bytes).convert("L").resize((cfg.size, cfg.size), Image.Resampling.BILINEAR)
    return ((np.asarray(img, np.float32) / 255 - cfg.mean) / cfg.std).astype(np.float32)


def prepare_all(items: list[bytes], fn: Callable[[bytes], np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """(batch, ok mask, ms per item) for `fn` over file bytes; an ImageError leaves a blank, wrong item."""
    arrays, ok = [], []
    t0 = time.perf_counter()
    for item in items:
        try:
            arrays.append(fn(item))
            ok.append(True)
        except ImageError:
            arrays.append(np.zeros((28, 28), np.float32))
            ok.append(False)
    ms = 1000 * (time.perf_counter() - t0) / max(len(items), 1)
    return to_batch(arrays), np.array(ok, bool), ms


def summarize(title: str, y: np.ndarray, preds: dict[str, np.ndarray], classes: list[str],
              groups: np.ndarray | None = None) -> None:
    """Print overall, per-class and (if given) per-group accuracy, one column per backend."""
    names = list(preds)
    print(f"\n### {title} (n={len(y)})")
    print("| | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    print("| **overall** | " + " | ".join(f"{(preds[n] == y).mean():.4f}" for n in names) + " |")
    for c, cname in enumerate(classes):
        sel = y == c
        if sel.any():
            print(f"| {cname} ({sel.sum()}) | " + " | ".join(f"{(preds[n][sel] == c).mean():.3f}" for n in names) + " |")
    if groups is not None and len(set(groups)) > 1:
        for g in sorted(set(groups)):
            sel = groups == g
            print(f"| source {g} ({sel.sum()}) | "
                  + " | ".join(f"{(preds[n][sel] == y[sel]).mean():.3f}" for n in names) + " |")


def _save_confusions(tag: str, y: np.ndarray, preds: dict[str, np.ndarray], classes: list[str], out: Path) -> None:
    for name, p in preds.items():
        path = out / f"confusion_{tag}_{name}.png"
        report.write_confusion(y, p, classes, path, title=f"{tag} ({name}), acc {(p == y).mean():.4f}")
    print(f"confusion matrices: {out}/confusion_{tag}_*.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate fashion-batch backends on Fashion-MNIST and on photos.")
    p.add_argument("--weights", type=Path, default=None, help="weights directory (default: FB_WEIGHTS_DIR or weights/)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS))
    p.add_argument("--photos", type=Path, default=None, help="folder or .zip: labels.csv or one folder per class")
    p.add_argument("--no-fmnist", dest="fmnist", action="store_false", help="skip the Fashion-MNIST test set")
    p.add_argument("--via-prepare", action="store_true",
                   help="also run Fashion-MNIST test images as PNG files through the preprocessing")
    p.add_argument("--naive", action="store_true", help="also score photos with the naive grey+resize baseline")
    p.add_argument("--limit", type=int, default=None, help="only the first N Fashion-MNIST test images")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per backend")
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="where confusion matrices go")
    return p.parse_args(argv)


def _label_shares(pred: np.ndarray, classes: list[str]) -> str:
    """'Bag 61%, Shirt 12%, ...': which labels a set of predictions gives, most frequent first."""
    counts = np.bincount(pred[pred >= 0], minlength=len(classes))
    order = np.argsort(-counts, kind="stable")
    return ", ".join(f"{classes[i]} {counts[i] / max(len(pred), 1):.0%}" for i in order if counts[i])


def main(argv: list[str] | None = None) -> int:
    """Load each backend once, then score every requested dataset with all of them."""
    args = parse_args(argv)
    manifest = load_manifest(args.weights or load_settings().weights_dir)
    cfg, classes = manifest.preprocess, manifest.classes
    backends = {n: load_backend(n, manifest=manifest, threads=args.threads) for n in args.backends.split(",")}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.fmnist:
        x, y = data.load_split("test", args.data_dir)
        x, y = x[: args.limit], y[: args.limit]
        preds = {n: predict_all(b, data.to_tensor_input(x)) for n, b in backends.items()}
        summarize("Fashion-MNIST test, raw tensors", y, preds, classes)
        _save_confusions("fmnist", y, preds, classes, args.out)
        if args.via_prepare:
            pngs = []
            for img in x:
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                pngs.append(buf.getvalue())
            batch, _, ms = prepare_all(pngs, lambda b: prepare(b, cfg))
            preds = {n: predict_all(b, batch) for n, b in backends.items()}
            summarize(f"Fashion-MNIST test as PNG through prepare ({ms:.2f} ms/image)", y, preds, classes)
    if args.photos is not None:
        photos: list[Photo] = load_photos(args.photos, classes)
        y = np.array([p.label for p in photos])
        groups = np.array([p.source for p in photos])
        batch, ok, ms = prepare_all([p.data for p in photos], lambda b: prepare(b, cfg))
        preds = {n: np.where(ok, predict_all(b, batch), -1) for n, b in backends.items()}
        summarize(f"{args.photos.name}: preprocessed (decode + prepare {ms:.2f} ms/image, "
                  f"{(~ok).sum()} unreadable)", y, preds, classes, groups)
        _save_confusions("photos", y, preds, classes, args.out)
        if args.naive:
            batch, ok, ms = prepare_all([p.data for p in photos], lambda b: naive_input(b, cfg))
            preds = {n: np.where(ok, predict_all(b, batch), -1) for n, b in backends.items()}
            summarize(f"{args.photos.name}: naive grey + resize baseline", y, preds, classes, groups)
            first = next(iter(preds))
            print(f"naive baseline, labels it gives ({first}): " + _label_shares(preds[first], classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
