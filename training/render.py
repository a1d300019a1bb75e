"""Render Fashion-MNIST test images as catalogue-style photos (for the sample ZIP and the benchmarks).

A light-on-black 28x28 garment becomes a coloured garment on an off-white background, enlarged to a few
hundred pixels, placed with a margin, with sensor noise, saved as JPEG. Deterministic for a given seed.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# Fabric colours (RGB) for the rendered garments: dark, mid and light tones.
PALETTE = np.array([
    (28, 32, 48), (60, 60, 66), (120, 24, 36), (24, 60, 120), (150, 110, 70), (40, 90, 60),
    (200, 60, 40), (90, 90, 150), (170, 150, 120), (110, 40, 90),
], dtype=np.float32)


def render_photo(img28: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = (400, 500)) -> Image.Image:
    """One photo-like RGB image of the garment in `img28` (uint8, 28x28, light on black)."""
    w, h = size
    long_side = int(min(w, h) * rng.uniform(0.6, 0.85))
    alpha = Image.fromarray(img28).resize((long_side, long_side), Image.Resampling.BICUBIC)
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255.0
    colour = PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.85, 1.15)
    shade = 0.55 + 0.45 * a  # the Fashion-MNIST intensity becomes the fabric's shading
    background = np.full(3, rng.uniform(228, 252), dtype=np.float32) + rng.uniform(-6, 6, 3)
    canvas = np.empty((h, w, 3), dtype=np.float32)
    canvas[:] = background
    # A soft vertical light fall-off, as in studio shots.
    canvas *= np.linspace(1.0, rng.uniform(0.9, 1.0), h, dtype=np.float32)[:, None, None]
    x0 = int(rng.integers(0, w - long_side + 1))
    y0 = int(rng.integers(0, h - long_side + 1))
    patch = canvas[y0:y0 + long_side, x0:x0 + long_side]
    garment = np.clip(colour * shade * 1.6, 0, 255)
    canvas[y0:y0 + long_side, x0:x0 + long_side] = patch * (1 - a) + garment * a
    canvas += rng.normal(0, 2.5, canvas.shape).astype(np.float32)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(img: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_zip(path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], seed: int = 0,
              size: tuple[int, int] = (400, 500)) -> Path:
    """A ZIP of rendered JPEGs named `<class>/<index>.jpg` (stored: JPEG does not compress further)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = classes[int(label)].replace("/", "-").replace(" ", "-").lower()
            zf.writestr(f"{folder}/{i:05d}.jpg", jpeg_bytes(render_photo(img, rng, size)))
    return path


def main(argv: list[str] | None = None) -> int:
    """Build the bundled sample ZIP: `python -m training.render --out pipeline/tools/samples/sample-photos.zip`."""
    from training.data import load_split
    from training.report import CLASSES

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", type=Path, default=Path("pipeline/tools/samples/sample-photos.zip"))
    p.add_argument("--per-class", type=int, default=4)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args(argv)
    images, labels = load_split("test", args.data_dir)
    picks = np.concatenate([np.flatnonzero(labels == c)[-args.per_class:] for c in range(10)])
    write_zip(args.out, images[picks], labels[picks], list(CLASSES), seed=args.seed)
    print(f"wrote {args.out} ({len(picks)} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
