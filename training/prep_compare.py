"""Does a change to the preprocessing change the labels? Dump what one checkout's `prepare` gives, compare two dumps.

    # in a checkout of the previous release, and in this one (the same weights, the same images):
    PYTHONPATH=../prev python -m training.prep_compare dump --photos ../shared/datasets/realphoto-dev --out old.npz
    python -m training.prep_compare dump --photos ../shared/datasets/realphoto-dev --out new.npz
    python -m training.prep_compare compare old.npz new.npz

A dump holds, per image, the prepared 28x28 array, the ONNX label of the given weights and the true label, for
the photos under `--photos` and (with `--fashion-mnist`) the Fashion-MNIST test images as PNGs. It imports
only `pipeline.images.preprocess.prepare`, `pipeline.inference` and `training.data`, which every release has,
so the same command runs against an older checkout. It measures; it chooses nothing.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _prepare_all(datas: list[bytes], cfg) -> tuple[np.ndarray, np.ndarray, float]:
    from pipeline.images.preprocess import prepare

    out = np.zeros((len(datas), cfg.size, cfg.size), np.float32)
    ok = np.ones(len(datas), bool)
    start = time.perf_counter()
    for i, d in enumerate(datas):
        try:
            out[i] = prepare(d, cfg)
        except ValueError:  # ImageError: the photo is unreadable with this implementation
            ok[i] = False
    return out, ok, 1000 * (time.perf_counter() - start) / max(len(datas), 1)


def fashion_mnist_pngs(data_dir: Path | None, limit: int | None) -> tuple[list[bytes], np.ndarray]:
    """The Fashion-MNIST test images as PNG files, and their labels."""
    from training.data import load_split

    x, y = load_split("test", data_dir)
    x, y = x[:limit], y[:limit]
    pngs = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, y.astype(np.int64)


def dump(args: argparse.Namespace) -> None:
    from pipeline.inference.backends import load_backend
    from pipeline.inference.manifest import load_manifest

    manifest = load_manifest(args.weights)
    cfg = manifest.preprocess
    backend = load_backend(args.backend, manifest=manifest, threads=1)
    sets: dict[str, tuple[list[bytes], np.ndarray, list[str]]] = {}
    if args.photos is not None:
        from training.photoset import load_photos

        photos = load_photos(args.photos, manifest.classes)
        sets["photos"] = ([p.data for p in photos], np.array([p.label for p in photos]), [p.name for p in photos])
    if args.fashion_mnist:
        pngs, y = fashion_mnist_pngs(args.data_dir, args.limit)
        sets["fmnist"] = (pngs, y, [str(i) for i in range(len(y))])
    out: dict[str, np.ndarray] = {}
    for name, (datas, y, names) in sets.items():
        x, ok, ms = _prepare_all(datas, cfg)
        probs = np.concatenate([backend.predict(np.ascontiguousarray(x[i:i + 256, None]))
                                for i in range(0, len(x), 256)])
        out.update({f"{name}_x": x, f"{name}_ok": ok, f"{name}_pred": probs.argmax(1), f"{name}_y": y,
                    f"{name}_names": np.array(names), f"{name}_ms": np.array(ms)})
        print(f"{name}: {len(y)} images, {ms:.3f} ms each (decode + prepare, one thread), accuracy "
              f"{100 * float(((probs.argmax(1) == y) & ok).mean()):.2f}%", flush=True)
    np.savez_compressed(args.out, **out)


def compare(args: argparse.Namespace) -> None:
    a, b = np.load(args.old), np.load(args.new)
    for name in ("photos", "fmnist"):
        if f"{name}_pred" not in a or f"{name}_pred" not in b:
            continue
        assert (a[f"{name}_names"] == b[f"{name}_names"]).all(), f"{name}: the dumps hold different images"
        y, pa, pb = a[f"{name}_y"], a[f"{name}_pred"], b[f"{name}_pred"]
        oka, okb = a[f"{name}_ok"], b[f"{name}_ok"]
        same = float(((pa == pb) & (oka == okb)).mean())
        acc_a, acc_b = float(((pa == y) & oka).mean()), float(((pb == y) & okb).mean())
        diff = np.abs(a[f"{name}_x"] - b[f"{name}_x"]).mean(axis=(1, 2))
        print(f"{name}: {len(y)} images; same label {100 * same:.2f}% ({int((pa != pb).sum())} differ); accuracy "
              f"{100 * acc_a:.2f}% -> {100 * acc_b:.2f}% ({100 * (acc_b - acc_a):+.2f} points); mean |dx| "
              f"{diff.mean():.4f} (max {diff.max():.3f}); ms/image {float(a[f'{name}_ms']):.3f} -> "
              f"{float(b[f'{name}_ms']):.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="prepare and label a set of images with this checkout's preprocessing")
    d.add_argument("--photos", type=Path, help="labelled photos (class folders or labels.csv)")
    d.add_argument("--fashion-mnist", action="store_true", help="also the Fashion-MNIST test images as PNGs")
    d.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST gz files (default: ../shared)")
    d.add_argument("--limit", type=int, default=None, help="only the first N Fashion-MNIST test images")
    d.add_argument("--weights", type=Path, default=Path("weights"))
    d.add_argument("--backend", default="onnx")
    d.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="labels and accuracy of two dumps of the same images")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = p.parse_args(argv)
    (dump if args.cmd == "dump" else compare)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
