"""Evaluate every model and backend on Fashion-MNIST test and on a labelled folder or ZIP of photos.

    python -m training.evaluate          # every model under FB_WEIGHTS_DIR, side by side: realphoto-dev (when
                                         # ../shared has it), Fashion-MNIST test as PNGs, the naive baseline
    python -m training.evaluate --models photo --backends int8 --photos my-photos/
    python -m training.evaluate --weights weights/photo --weights runs/mine --backends onnx

Each model folder (or `--weights` directory) gets its columns side by side (`<model>/<backend>`), every column
fed by its own model's preprocessing (the manifest's `preprocess.kind`). On photos
it also reports the expected calibration error (15 bins) and writes a reliability diagram per column;
`--temperatures heldout=0.674,balanced=0.714` adds the ECE each column would have with that temperature folded
in instead of the one its manifest records (the same predictions, re-tempered; labels do not change).
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
from pipeline.images.kinds import kind_of_config
from pipeline.images.preprocess import PreprocessConfig, to_batch
from pipeline.inference.backends import BACKENDS, load_backend
from pipeline.inference.catalogue import model_dirs
from pipeline.inference.manifest import load_manifest
from pipeline.settings import load_settings
from training import calibration, data, report
from training.photoset import Photo, load_photos


DEV_PHOTOS = Path("../shared/datasets/realphoto-dev")


def _model_folders(models: str | None) -> list[Path]:
    """The model folders under FB_WEIGHTS_DIR, all or the comma-separated `models`."""
    found = model_dirs(load_settings().weights_dir)
    names = [m.strip() for m in models.split(",")] if models else list(found)
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"no model {missing} under {load_settings().weights_dir}; there are {', '.join(found)}")
    return [found[n] for n in names]


def predict_probs(backend, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Probabilities (N,10) for a (N,1,28,28) batch, in chunks."""
    return np.concatenate([backend.predict(x[i:i + batch]) for i in range(0, len(x), batch)])


def predict_all(backend, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Labels predicted for a (N,1,28,28) batch, in chunks."""
    return predict_probs(backend, x, batch).argmax(1)


def naive_input(data_bytes: bytes, cfg: PreprocessConfig) -> np.ndarray:
    """The baseline this project replaced: grey, squash to 28x28, normalize (no polarity, no crop)."""
    img = decode_image(data_bytes).convert("L").resize((cfg.size, cfg.size), Image.Resampling.BILINEAR)
    return ((np.asarray(img, np.float32) / 255 - cfg.mean) / cfg.std).astype(np.float32)


def prepare(data_bytes: bytes, cfg) -> np.ndarray:
    """Image bytes -> the network input of the model whose preprocessing config is `cfg`, as workers prepare it."""
    return kind_of_config(cfg).prepare(data_bytes, cfg)


def prepare_all(items: list[bytes], fn: Callable[[bytes], np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """(batch, ok mask, ms per item) for `fn` over file bytes; an ImageError leaves a blank, wrong item."""
    arrays, ok = [], []
    blank = None
    t0 = time.perf_counter()
    for item in items:
        try:
            arrays.append(fn(item))
            blank = np.zeros_like(arrays[-1]) if blank is None else blank
            ok.append(True)
        except ImageError:
            arrays.append(None)
            ok.append(False)
    if blank is not None:
        arrays = [blank if a is None else a for a in arrays]
    ms = 1000 * (time.perf_counter() - t0) / max(len(items), 1)
    return to_batch(arrays), np.array(ok, bool), ms


def summarize(title: str, y: np.ndarray, preds: dict[str, np.ndarray], classes: list[str],
              groups: np.ndarray | None = None, probs: dict[str, np.ndarray] | None = None) -> None:
    """Print overall, per-class and (if given) per-group accuracy and ECE, one column per backend."""
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
    if probs is not None:
        print(f"| ECE ({calibration.ECE_BINS} bins) | "
              + " | ".join(f"{calibration.ece(probs[n], y):.4f}" for n in names) + " |")


def _save_confusions(tag: str, y: np.ndarray, preds: dict[str, np.ndarray], classes: list[str], out: Path) -> None:
    for name, p in preds.items():
        path = out / f"confusion_{tag}_{name.replace('/', '_')}.png"
        report.write_confusion(y, p, classes, path, title=f"{tag} ({name}), acc {(p == y).mean():.4f}")
    print(f"confusion matrices: {out}/confusion_{tag}_*.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate fashion-batch backends on Fashion-MNIST and on photos.")
    p.add_argument("--weights", type=Path, action="append", default=None,
                   help="a model folder (one with a manifest.json); repeat to compare several. Default: every "
                        "model folder under FB_WEIGHTS_DIR (weights/)")
    p.add_argument("--models", default=None, help="comma-separated model names under FB_WEIGHTS_DIR (default: all)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS))
    p.add_argument("--photos", type=Path, default=DEV_PHOTOS if DEV_PHOTOS.is_dir() else None,
                   help="folder or .zip: labels.csv or one folder per class (default: realphoto-dev, if present)")
    p.add_argument("--no-fmnist", dest="fmnist", action="store_false", help="skip the Fashion-MNIST test set")
    p.add_argument("--raw", action="store_true",
                   help="also feed the 28x28 models Fashion-MNIST test as raw tensors (no PNG, no preprocessing)")
    p.add_argument("--no-naive", dest="naive", action="store_false",
                   help="skip the naive baseline (the 28x28 models fed grey + squash, no segmentation)")
    p.add_argument("--limit", type=int, default=None, help="only the first N Fashion-MNIST test images")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per backend")
    p.add_argument("--temperatures", default="",
                   help="photos: also the ECE with each of these temperatures folded in, e.g. 'heldout=0.674'")
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="where confusion matrices go")
    return p.parse_args(argv)


def _label_shares(pred: np.ndarray, classes: list[str]) -> str:
    """'Bag 61%, Shirt 12%, ...': which labels a set of predictions gives, most frequent first."""
    counts = np.bincount(pred[pred >= 0], minlength=len(classes))
    order = np.argsort(-counts, kind="stable")
    return ", ".join(f"{classes[i]} {counts[i] / max(len(pred), 1):.0%}" for i in order if counts[i])


def _columns(weights: list[Path], backends: list[str], threads: int | None) -> dict[str, tuple]:
    """{column: (backend, manifest)}: one column per backend, per weights directory when there are several."""
    names = [w.name or str(w) for w in weights]
    if len(set(names)) < len(names):
        names = [str(w) for w in weights]
    columns = {}
    for name, w in zip(names, weights):
        manifest = load_manifest(w)
        for b in backends:
            columns[f"{name}/{b}"] = (load_backend(b, manifest=manifest, threads=threads), manifest)
    return columns


def _by_preprocessing(columns: dict[str, tuple], items: list[bytes], fn) -> tuple[dict, dict, float]:
    """Probabilities and ok masks per column; items are prepared once per distinct preprocessing config."""
    prepared: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    probs, oks = {}, {}
    for col, (backend, manifest) in columns.items():
        key = repr(manifest.preprocess.to_dict())
        if key not in prepared:
            prepared[key] = prepare_all(items, lambda b, cfg=manifest.preprocess: fn(b, cfg))
        batch, ok, _ = prepared[key]
        probs[col], oks[col] = predict_probs(backend, batch), ok
    ms = next(iter(prepared.values()))[2]
    return probs, oks, ms


def _retempered_ece(columns: dict[str, tuple], probs: dict[str, np.ndarray], y: np.ndarray, spec: str) -> None:
    """Print, per column, the ECE its probabilities would have with each temperature of `spec`
    ('name=T,...') folded in instead of the manifest's `training.calibration.temperature` (1 if none)."""
    names = list(probs)
    folded = {c: float(columns[c][1].raw.get("training", {}).get("calibration", {}).get("temperature", 1.0))
              for c in names}
    print("| folded T | " + " | ".join(f"{folded[c]:.4f}" for c in names) + " |")
    for part in filter(None, (s.strip() for s in spec.split(","))):
        name, value = part.rsplit("=", 1) if "=" in part else (part, part)
        t = float(value)
        print(f"| ECE ({calibration.ECE_BINS} bins) at T={t:.4f} ({name}) | "
              + " | ".join(f"{calibration.ece(calibration.retemper(probs[c], folded[c], t), y):.4f}" for c in names)
              + " |")


def main(argv: list[str] | None = None) -> int:
    """Load each backend once, then score every requested dataset with all of them."""
    args = parse_args(argv)
    weights = args.weights or _model_folders(args.models)
    columns = _columns(weights, args.backends.split(","), args.threads)
    classes = next(iter(columns.values()))[1].classes
    args.out.mkdir(parents=True, exist_ok=True)
    grey = {c: v for c, v in columns.items() if isinstance(v[1].preprocess, PreprocessConfig)}
    if args.fmnist:
        x, y = data.load_split("test", args.data_dir)
        x, y = x[: args.limit], y[: args.limit]
        if args.raw and grey:
            preds = {c: predict_all(b, data.to_tensor_input(x)) for c, (b, _) in grey.items()}
            summarize("Fashion-MNIST test, raw tensors (28x28 models)", y, preds, classes)
        pngs = []
        for img in x:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            pngs.append(buf.getvalue())
        probs, _, ms = _by_preprocessing(columns, pngs, lambda b, cfg: prepare(b, cfg))
        preds = {c: p.argmax(1) for c, p in probs.items()}
        summarize("Fashion-MNIST test as 28x28 PNGs through each model's preprocessing", y, preds, classes,
                  probs=probs)
        _save_confusions("fmnist", y, preds, classes, args.out)
    if args.photos is not None:
        photos: list[Photo] = load_photos(args.photos, classes)
        y = np.array([p.label for p in photos])
        groups = np.array([p.source for p in photos])
        probs, oks, ms = _by_preprocessing(columns, [p.data for p in photos], lambda b, cfg: prepare(b, cfg))
        preds = {c: np.where(oks[c], p.argmax(1), -1) for c, p in probs.items()}
        unreadable = int((~next(iter(oks.values()))).sum())
        summarize(f"{args.photos.name}: preprocessed (decode + prepare {ms:.2f} ms/image, {unreadable} unreadable)",
                  y, preds, classes, groups, probs)
        _save_confusions("photos", y, preds, classes, args.out)
        for col, p in probs.items():
            path = args.out / f"reliability_{col.replace('/', '_')}.png"
            calibration.write_reliability(p, y, path, title=f"{args.photos.name} ({col})")
        print(f"reliability diagrams: {args.out}/reliability_*.png")
        if args.temperatures:
            _retempered_ece(columns, probs, y, args.temperatures)
        if args.naive and grey:
            probs, oks, _ = _by_preprocessing(grey, [p.data for p in photos], lambda b, cfg: naive_input(b, cfg))
            preds = {c: np.where(oks[c], p.argmax(1), -1) for c, p in probs.items()}
            summarize(f"{args.photos.name}: naive grey + resize baseline", y, preds, classes, groups)
            first = next(iter(preds))
            print(f"naive baseline, labels it gives ({first}): " + _label_shares(preds[first], classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
