"""The photo model's training data, as letterboxed uint8 squares (N, S, S, 3), built once and cached.

Three kinds of image, all through the preprocessing inference uses (`pipeline.images.letterbox`):
1. real photos: each training photo `variants` times, augmented as a photo (training/photo_augment.py: crop,
   flip, tilt, light, colour, and a new flat background for a quarter of them, so H&M's one grey backdrop is
   no cue), plus once clean; held-out photos once, clean;
2. Fashion-MNIST rendered as catalogue photos (training/render.py): thousands of pullovers and coats;
3. Fashion-MNIST as the grey 28x28 originals, enlarged, as users upload them.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from pipeline.images.imaging import ImageError, decode_image
from pipeline.images.letterbox import LetterboxConfig, decode_rgb, letterbox
from training.photo_augment import PhotoAugment, augment_photo
from training.photoset import Photo
from training.render import jpeg_bytes, render_photo


def _photo_squares(args: tuple[bytes, int, int, int, PhotoAugment | None, LetterboxConfig]) -> list[np.ndarray]:
    data, seed, i, variants, aug, cfg = args
    try:
        rgb = decode_rgb(data, 2 * cfg.size)
    except ImageError:
        return []
    out = [letterbox(rgb, cfg)]
    if aug is not None:
        img = Image.fromarray(rgb)
        rng = np.random.default_rng([seed, i])
        for _ in range(variants):
            # Through JPEG again, as an upload would be: the network must not learn re-encoding artefacts apart.
            variant = decode_image(jpeg_bytes(augment_photo(img, aug, rng), quality=int(rng.integers(70, 95))))
            out.append(letterbox(np.asarray(variant.convert("RGB")), cfg))
    return out


def photo_squares(photos: Sequence[Photo], cfg: LetterboxConfig, variants: int = 0, seed: int = 0,
                  aug: PhotoAugment | None = None, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(squares, index of the photo each came from): each photo clean, then `variants` augmented copies."""
    jobs = [(p.data, seed, i, variants, aug if variants else None, cfg) for i, p in enumerate(photos)]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_photo_squares, jobs, chunksize=16))
    squares = [s for r in results for s in r]
    index = [i for i, r in enumerate(results) for _ in r]
    return np.stack(squares), np.array(index, np.int64)


def _rendered(args: tuple[np.ndarray, int, LetterboxConfig]) -> np.ndarray:
    img28, seed, cfg = args
    rng = np.random.default_rng(seed)
    w = int(rng.integers(240, 400))
    photo = render_photo(img28, rng, size=(w, int(w * rng.uniform(1.0, 1.4))))
    return letterbox(np.asarray(Image.open(io.BytesIO(jpeg_bytes(photo))).convert("RGB")), cfg)


def grey_square(img28: np.ndarray, cfg: LetterboxConfig) -> np.ndarray:
    """A 28x28 Fashion-MNIST image as a user uploads it (a grey PNG), through the photo preprocessing."""
    buf = io.BytesIO()
    Image.fromarray(img28, "L").save(buf, "PNG")
    return letterbox(decode_rgb(buf.getvalue(), cfg.size), cfg)


def fashion_squares(images: np.ndarray, labels: np.ndarray, per_class: int, cfg: LetterboxConfig, seed: int,
                    rendered: bool, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` Fashion-MNIST images of each class, rendered as photos or kept grey; (squares, labels)."""
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == c) for c in range(10)]
    pick = np.concatenate([rng.choice(pool, per_class, replace=len(pool) < per_class) for pool in pools if len(pool)])
    if rendered:
        with ProcessPoolExecutor(workers) as pool:
            squares = list(pool.map(_rendered, [(images[i], seed * 1_000_003 + int(i), cfg) for i in pick],
                                    chunksize=32))
    else:
        squares = [grey_square(images[i], cfg) for i in pick]
    return np.stack(squares), labels[pick].astype(np.int64)
