"""Augment a real PHOTO (before preprocessing) and cache what `prepare` makes of it.

Augmenting the photo, not the 28x28 result, teaches the network what the preprocessing does with a
slightly different framing, lighting or background: a looser crop, a tinted wall, a darker exposure
move the segmentation itself. Each training photo is augmented a fixed number of times once, prepared
through the same `prepare_image` that inference uses, and cached as float32 (N, 28, 28) arrays.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from pipeline.images.imaging import ImageError, decode_image
from pipeline.images.preprocess import PreprocessConfig, prepare, prepare_image
from training.photoset import Photo


@dataclass(frozen=True)
class PhotoAugment:
    """Ranges of the photo-level transforms (each variant draws every one of them)."""

    crop: tuple[float, float] = (0.80, 1.0)  # side of the random crop, as a share of the photo's sides
    p_flip: float = 0.5
    rotate_deg: float = 7.0
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.6, 1.4)
    p_tint: float = 0.35  # multiply the photo by a random colour (a tinted wall, warm light)
    tint: float = 0.15
    p_background: float = 0.25  # replace the near-border-coloured background by a random flat colour
    p_pad: float = 0.2  # pad with the border colour (the garment smaller in the frame)
    pad: tuple[float, float] = (0.05, 0.25)


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _border_colour(a: np.ndarray) -> np.ndarray:
    b = max(1, min(a.shape[:2]) // 25)
    band = np.concatenate([a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3),
                           a[:, -b:].reshape(-1, 3)])
    return np.median(band, axis=0)


def augment_photo(img: Image.Image, aug: PhotoAugment, rng: np.random.Generator) -> Image.Image:
    """One random variant of an RGB photo (geometry, then colour, then background)."""
    img = img.convert("RGB")
    w, h = img.size
    a = np.asarray(img, np.float32)
    bg = _border_colour(a)
    fill = tuple(int(v) for v in bg)
    if rng.random() < aug.p_pad:
        p = _u(rng, aug.pad)
        img = ImageOps.expand(img, border=(int(p * w), int(p * h)), fill=fill)
        w, h = img.size
    sw, sh = _u(rng, aug.crop), _u(rng, aug.crop)
    cw, ch = max(8, int(sw * w)), max(8, int(sh * h))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < aug.p_flip:
        img = ImageOps.mirror(img)
    img = img.rotate(float(rng.uniform(-aug.rotate_deg, aug.rotate_deg)), Image.Resampling.BILINEAR,
                     expand=False, fillcolor=fill)
    img = ImageEnhance.Brightness(img).enhance(_u(rng, aug.brightness))
    img = ImageEnhance.Contrast(img).enhance(_u(rng, aug.contrast))
    img = ImageEnhance.Color(img).enhance(_u(rng, aug.saturation))
    a = np.asarray(img, np.float32)
    if rng.random() < aug.p_background:
        # Pixels close to the border colour are background; give them a random flat colour instead.
        bg = _border_colour(a)
        near = np.abs(a - bg).max(axis=2) < 18
        a = np.where(near[..., None], rng.uniform(0, 255, 3).astype(np.float32), a)
    if rng.random() < aug.p_tint:
        a = a * (1 + rng.uniform(-aug.tint, aug.tint, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _decode(photo: Photo, cfg: PreprocessConfig) -> Image.Image:
    # Augmentation works at a modest size: twice the segmentation resolution keeps crops sharp.
    img = decode_image(photo.data, draft_size=(2 * cfg.work_long_side, 2 * cfg.work_long_side))
    img.thumbnail((2 * cfg.work_long_side, 2 * cfg.work_long_side))
    return img.convert("RGB")


def cache_key(photos: Sequence[Photo], cfg: PreprocessConfig, aug: PhotoAugment | None,
              variants: int, seed: int) -> str:
    """A short hash of everything the cached arrays depend on."""
    h = hashlib.sha256()
    h.update(json.dumps([cfg.to_dict(), asdict(aug) if aug else None, variants, seed]).encode())
    for p in photos:
        h.update(p.name.encode())
    return h.hexdigest()[:12]


def prepare_clean(photos: Sequence[Photo], cfg: PreprocessConfig) -> np.ndarray:
    """float32 (N, 28, 28): every photo through `prepare` exactly as inference runs it (blank if unreadable)."""
    out = np.zeros((len(photos), cfg.size, cfg.size), np.float32)
    for i, p in enumerate(photos):
        try:
            out[i] = prepare(p.data, cfg)
        except ImageError:
            pass
    return out


def prepare_augmented(photos: Sequence[Photo], cfg: PreprocessConfig, aug: PhotoAugment, variants: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(arrays (N*variants, 28, 28), index of the photo each came from); photo i uses seed (seed, i)."""
    arrays, index = [], []
    for i, p in enumerate(photos):
        try:
            img = _decode(p, cfg)
        except ImageError:
            continue
        rng = np.random.default_rng([seed, i])
        for _ in range(variants):
            try:
                arrays.append(prepare_image(augment_photo(img, aug, rng), cfg))
                index.append(i)
            except Exception:  # noqa: BLE001, S112 - a variant that cannot be prepared is skipped
                continue
    return np.stack(arrays).astype(np.float32), np.array(index, np.int64)


def cached(path: Path, build) -> dict[str, np.ndarray]:
    """Load an npz from `path`, or build it with `build()` (a dict of arrays) and save it first."""
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return arrays
