"""Turn any photo of one garment into the network's input: a 28x28 Fashion-MNIST-like array.

Pure: bytes (or a decoded image) in, array out; no I/O, logging or state. Every constant lives in
`PreprocessConfig`, which the weights manifest records so training, export and workers agree.

Fashion-MNIST is light garments on a zero background, trimmed to the object, the long side fitted to
28 px, centred, with the brightest pixel at full scale. The steps below bring a real photo there:
flatten transparency; estimate the background from the border; measure how far each pixel stands out
from it (in tone with the right polarity, or in colour); keep the largest blobs; zero the rest; crop,
fit, centre, stretch, normalize.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from pipeline.images.garment import garment_extent
from pipeline.images.imaging import DEFAULT_MAX_PIXELS, ImageError, decode_image

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")


@dataclass(frozen=True)
class PreprocessConfig:
    """All preprocessing constants; the manifest stores `to_dict()` and loaders rebuild with `from_dict()`."""

    size: int = 28  # output side
    object_long_side: int = 28  # Fashion-MNIST fits the trimmed object's long side to the full 28 px
    work_long_side: int = 128  # segmentation runs at this resolution; JPEGs are decoded near it (draft)
    border_frac: float = 0.04  # width of the border band that samples the background
    light_background: float = 0.5  # a background lighter than this (0..1) is inverted
    colour_weight: float = 0.6  # how much a colour difference (at equal tone) counts as standing out
    min_contrast: float = 0.08  # never call a pixel object below this contrast (JPEG noise, paper grain)
    noise_k: float = 5.0  # ...nor, unless Otsu finds a clear split, below border median + noise_k sigmas
    smooth_frac: float = 0.04  # box filter on the contrast map before thresholding (texture, speckle)...
    close_frac: float = 0.04  # ...closing that joins fragments of a garment split by prints or folds...
    dilate_frac: float = 0.016  # ...and the margin kept around the object; all as fractions of the long side
    min_blob_frac: float = 0.002  # blobs smaller than this share of the frame are noise
    keep_blob_frac: float = 0.15  # keep every blob at least this share of the largest (pairs of shoes)
    skin: bool = True  # treat skin-coloured pixels as background (models wearing the garment)
    skin_min: float = 0.02  # ...when skin is between these shares of the pixels that stand out
    skin_max: float = 0.35
    garment: bool = False  # a person wearing it: drop the head, cut where the garment ends (images/garment.py)
    garment_colour_tol: float = 0.2  # ...rows whose colour stays within this of the chest colour continue it
    garment_min_aspect: float = 0.0  # ...and a worn garment's crop is widened to at least this width/height
    max_gain: float = 4.0  # cap on the contrast stretch so a near-blank frame does not turn into noise
    mean: float = 0.2860  # training normalization (Fashion-MNIST train mean/std of pixel/255)
    std: float = 0.3530

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessConfig":
        """Rebuild from `to_dict()` output; unknown keys are an error so a newer manifest fails loudly."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; this build knows {sorted(names)}")
        return cls(**d)


def _to_planes(img: Image.Image) -> np.ndarray:
    """Float32 RGB planes (3, H, W) in [0, 1]; transparency is flattened onto a matte that contrasts."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float32)
        a = a / max(float(a.max()), 1e-6)
        return np.repeat(a[None], 3, axis=0)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA")).transpose(2, 0, 1).astype(np.float32) / 255
        rgb, alpha = rgba[:3], rgba[3]
        opaque = alpha > 0.5
        # A light cut-out goes on black and a dark one on white, so the object always stands out.
        tone = float(np.tensordot(_LUMA, rgb[:, opaque], 1).mean()) if opaque.any() else 1.0
        matte = 0.0 if tone > 0.5 else 1.0
        return rgb * alpha + matte * (1 - alpha)
    return np.asarray(img.convert("RGB")).transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)


def _shrink(img: Image.Image, long_side: int) -> Image.Image:
    w, h = img.size
    if max(w, h) <= long_side:
        return img
    s = long_side / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR, reducing_gap=2.0)


def _border(a: np.ndarray, frac: float) -> np.ndarray:
    """The pixels of a band around the frame of a (..., H, W) array, flattened to (..., K)."""
    h, w = a.shape[-2:]
    b = max(1, int(round(frac * min(h, w))))
    lead = a.shape[:-2]
    parts = [a[..., :b, :], a[..., -b:, :], a[..., b:h - b, :b], a[..., b:h - b, w - b:]]
    return np.concatenate([p.reshape(*lead, -1) for p in parts], axis=-1)


def _otsu(x: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of values in [0, 1]: the split that maximizes between-class variance."""
    hist = np.bincount(np.minimum((x.ravel() * bins).astype(np.int32), bins - 1), minlength=bins).astype(np.float64)
    centres = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * centres)
    total, mean = w0[-1], m0[-1]
    w1 = total - w0
    between = (mean * w0 - total * m0) ** 2 / np.maximum(w0 * w1, 1e-9)
    return float((np.argmax(between[:-1]) + 1) / bins)


def _tone(grey: np.ndarray, bg_grey: float, invert: bool) -> np.ndarray:
    """Signed tone against the background, scaled so the background is 0 and the far end of the scale 1."""
    tone = (bg_grey - grey) if invert else (grey - bg_grey)
    return tone * np.float32(1 / max(bg_grey if invert else 1.0 - bg_grey, 0.25))


def standout(planes: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, float, float]:
    """How far each pixel stands out from the background: (contrast, smoothed, threshold, background level).

    Tone counts with the polarity the background implies (a light background is inverted); a colour
    difference counts too, so a red shirt on a grey floor of the same luminance still stands out.
    """
    bg = np.median(_border(planes, cfg.border_frac), axis=1).astype(np.float32)
    grey = np.tensordot(_LUMA, planes, 1)
    bg_grey = float(_LUMA @ bg)
    tone = _tone(grey, bg_grey, bg_grey > cfg.light_background)
    colour = np.abs(planes[0] - bg[0])
    np.maximum(colour, np.abs(planes[1] - bg[1]), out=colour)
    np.maximum(colour, np.abs(planes[2] - bg[2]), out=colour)
    colour *= np.float32(cfg.colour_weight)
    contrast = np.clip(np.maximum(tone, colour), 0, 1)
    if cfg.skin:
        skin = _skin(planes, grey)
        # Only where skin is a minority of what stands out: a tan boot or a leather bag is all "skin".
        frac = float(skin[contrast > cfg.min_contrast].mean()) if (contrast > cfg.min_contrast).any() else 0.0
        if cfg.skin_min < frac < cfg.skin_max:
            contrast[skin] = 0
    k = _px(cfg.smooth_frac, contrast.shape)
    smooth = ndimage.uniform_filter(contrast, k) if k > 1 else contrast
    edge = _border(smooth, cfg.border_frac)
    med = float(np.median(edge))
    noise = med + cfg.noise_k * 1.4826 * float(np.median(np.abs(edge - med)))
    # A textured background inflates the noise estimate; a clear bimodal split (Otsu) may still be lower.
    threshold = max(cfg.min_contrast, min(noise, _otsu(smooth)))
    return contrast, smooth, threshold, med


def _skin(planes: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels (the classic YCbCr box of Chai and Ngan), opened to drop isolated pixels."""
    cb = 0.5 + 0.564 * (planes[2] - grey)
    cr = 0.5 + 0.713 * (planes[0] - grey)
    m = (cb > 0.302) & (cb < 0.498) & (cr > 0.522) & (cr < 0.678) & (grey > 0.2)
    return _grow(_shrink_mask(m, 3), 3)


def _px(frac: float, shape: tuple[int, ...]) -> int:
    """An odd filter size for a fraction of the long side, so a 28 px thumbnail gets none and a photo some."""
    return 2 * int(frac * max(shape) / 2) + 1


def _grow(mask: np.ndarray, size: int) -> np.ndarray:
    return ndimage.uniform_filter(mask.astype(np.float32), size) > 1e-3


def _shrink_mask(mask: np.ndarray, size: int) -> np.ndarray:
    return ndimage.uniform_filter(mask.astype(np.float32), size) > 1 - 1e-3


def object_mask(smooth: np.ndarray, threshold: float, cfg: PreprocessConfig) -> np.ndarray | None:
    """Boolean mask of the object (largest blob and its big companions, holes filled), or None."""
    mask = smooth > threshold
    close = _px(cfg.close_frac, smooth.shape)
    if close > 1:
        mask = _shrink_mask(_grow(mask, close), close)
    # Parts a few pixels apart (a handle, the second shoe of a pair) are labelled as one blob.
    labels, n = ndimage.label(_grow(mask, 2 * _px(cfg.dilate_frac / 2, smooth.shape) + 1),
                              structure=np.ones((3, 3), bool))
    labels[~mask] = 0
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    sizes[0] = 0
    keep = (sizes >= cfg.keep_blob_frac * sizes.max()) & (sizes >= cfg.min_blob_frac * smooth.size)
    keep[0] = False
    if not keep.any():
        return None
    mask = keep[labels]
    # Fill holes: background pockets that do not reach the frame belong to the garment (prints, folds).
    holes, nh = ndimage.label(~mask)
    if nh > 1:
        outside = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        inside = np.ones(nh + 1, bool)
        inside[outside] = False
        inside[0] = False
        mask |= inside[holes]
    return mask


def _fit(obj: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize the cropped object so its long side is `object_long_side`, centred on a zero canvas."""
    h, w = obj.shape
    s = cfg.object_long_side / max(h, w)
    nw, nh = max(1, min(cfg.size, round(w * s))), max(1, min(cfg.size, round(h * s)))
    if (nw, nh) != (w, h):
        # Area-averaging when shrinking keeps thin straps and edges; bilinear when enlarging.
        filt = Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR
        obj = np.asarray(Image.fromarray(obj, mode="F").resize((nw, nh), filt), dtype=np.float32)
    out = np.zeros((cfg.size, cfg.size), np.float32)
    # An odd margin puts its extra pixel before the object, as Fashion-MNIST does.
    y, x = (cfg.size - nh + 1) // 2, (cfg.size - nw + 1) // 2
    out[y:y + nh, x:x + nw] = obj
    return out


def prepare_image(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded image -> float32 (size, size), normalized as in training."""
    planes = _to_planes(_shrink(img, cfg.work_long_side))
    contrast, smooth, threshold, level = standout(planes, cfg)
    mask = object_mask(smooth, threshold, cfg)
    worn = False
    if mask is not None and cfg.garment:
        cut = garment_extent(mask, planes, _skin(planes, np.tensordot(_LUMA, planes, 1)),
                             colour_tol=cfg.garment_colour_tol)
        worn, mask = cut is not mask, cut
    if mask is None:
        # Nothing stands out: classify the whole frame rather than refuse (the label will be unsure).
        obj = contrast
    else:
        # Background level to zero: subtract what the background itself scores, drop everything off-object.
        obj = np.clip(contrast - level, 0, None)
        # Keep a thin margin so soft edges survive; a 28 px thumbnail keeps a 1 px halo.
        obj = np.where(_grow(mask, max(3, _px(cfg.dilate_frac, mask.shape))), obj, 0).astype(np.float32)
        ys, xs = np.nonzero(obj > 0)
        if len(ys):
            obj = obj[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        h, w = obj.shape
        if worn and w < cfg.garment_min_aspect * h:
            # Arms hang along a worn top; Fashion-MNIST's tops fill the frame, sleeves spread.
            obj = np.asarray(Image.fromarray(obj, mode="F").resize(
                (round(cfg.garment_min_aspect * h), h), Image.Resampling.BILINEAR), dtype=np.float32)
    x = _fit(np.ascontiguousarray(obj, dtype=np.float32), cfg)
    top = float(x.max())
    if top > 0:
        # Fashion-MNIST's brightest pixel is always ~255: stretch to full scale, within limits.
        x = np.clip(x * min(1.0 / top, cfg.max_gain), 0, 1)
    return ((x - cfg.mean) / cfg.std).astype(np.float32)


def prepare(data: bytes, cfg: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image file bytes -> float32 (size, size) network input. Raises only ImageError."""
    img = decode_image(data, max_pixels=max_pixels, draft_size=(cfg.work_long_side, cfg.work_long_side))
    try:
        return prepare_image(img, cfg)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd image must fail as an item, never crash the batch
        raise ImageError(f"image could not be preprocessed: {type(exc).__name__}: {exc}") from None


def to_batch(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack prepared (size, size) arrays into a C-contiguous float32 (N, 1, size, size) batch."""
    if len(arrays) == 0:
        return np.zeros((0, 1, 28, 28), np.float32)
    return np.ascontiguousarray(np.stack(arrays)[:, None], dtype=np.float32)
