"""Turn any photo of one garment into the network's input: a 28x28 Fashion-MNIST-like array.

Pure: bytes (or a decoded image) in, array out; no I/O, logging or state. Every constant lives in
`PreprocessConfig`, which the weights manifest records so training, export and workers agree.

Fashion-MNIST is light garments on a zero background, trimmed to the object, the long side fitted to
28 px, centred, with the brightest pixel at full scale. The steps below bring a real photo there:
flatten transparency; estimate the background from the border; measure how far each pixel stands out
from it (in tone with the right polarity, or in colour); keep the largest blobs; zero the rest; crop,
fit, centre, stretch, normalize.

OpenCV (connected components, morphology, box filters, colour conversion) and numpy on float32/uint8
arrays at the working resolution; Pillow only for its resampling filters, which the shipped weights were
tuned with. `prepare_rgb` is the entry for pixels, `prepare` for file bytes (JPEG decodes straight to
numpy through `imaging.decode_jpeg_rgb`).
"""
from __future__ import annotations

import functools
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from pipeline.images.config import PreprocessConfig
from pipeline.images.garment import garment_extent
from pipeline.images.imaging import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode_image,
    decode_jpeg_rgb,
)

__all__ = ["PreprocessConfig", "decode_rgb", "prepare", "prepare_image", "prepare_rgb", "to_batch", "to_rgb",
           "use_threads"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")


def use_threads(n: int) -> None:
    """OpenCV's threads for this process (a worker process per core wants 1: its images are small)."""
    cv2.setNumThreads(n)


def to_rgb(img: Image.Image) -> np.ndarray:
    """A decoded image as RGB uint8 (H, W, 3); transparency is flattened onto a matte that contrasts."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float32)
        a = np.rint(a * (255 / max(float(a.max()), 1e-6))).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) * np.float32(1 / 255)
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        opaque = alpha[..., 0] > 0.5
        # A light cut-out goes on black and a dark one on white, so the object always stands out.
        tone = float((rgb[opaque] @ _LUMA).mean()) if opaque.any() else 1.0
        matte = 0.0 if tone > 0.5 else 1.0
        return np.rint((rgb * alpha + matte * (1 - alpha)) * 255).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def _work_size(w: int, h: int, long_side: int) -> tuple[int, int]:
    s = long_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _shrink(img: Image.Image, long_side: int) -> Image.Image:
    """Down to the working size with Pillow's antialiased bilinear filter. OpenCV's resizes are faster but not
    the same filter, and the segmentation downstream is sensitive to it: on realphoto-train, INTER_AREA changes
    3% of the labels, INTER_LINEAR 4.4%, against none for this."""
    if max(img.size) <= long_side:
        return img
    return img.resize(_work_size(*img.size, long_side), Image.Resampling.BILINEAR, reducing_gap=2.0)


def _shrink_rgb(rgb: np.ndarray, long_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return rgb if max(h, w) <= long_side else np.asarray(_shrink(Image.fromarray(rgb), long_side))


def _median(x: np.ndarray) -> float:
    """The median of a 1-D array (np.median without its overhead; same result)."""
    n = x.size
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return (float(part[k - 1]) + float(part[k])) / 2


def _channel_medians(pixels: np.ndarray) -> np.ndarray:
    """Per-channel medians of (K, C) pixels, as float32 (np.median's result, in one partition)."""
    n = pixels.shape[0]
    k = n // 2
    if n % 2:
        return np.partition(pixels.T, k, axis=1)[:, k].astype(np.float32)
    part = np.partition(pixels.T, (k - 1, k), axis=1)
    return (part[:, k - 1].astype(np.float32) + part[:, k]) / np.float32(2)


def _channel_max(img: np.ndarray) -> np.ndarray:
    """The largest channel of each pixel of an (H, W, C) image, as (H, W)."""
    out = np.maximum(img[..., 0], img[..., 1])  # strided views: no copies of the planes
    for c in range(2, img.shape[2]):
        np.maximum(out, img[..., c], out=out)
    return out


def _band(h: int, w: int, frac: float) -> int:
    return max(1, int(round(frac * min(h, w))))


def _border(a: np.ndarray, b: int) -> np.ndarray:
    """The pixels of a band `b` wide around the frame of an (H, W[, C]) array, as (K[, C])."""
    h, w = a.shape[:2]
    rest = a.shape[2:]
    return np.concatenate([a[:b].reshape(-1, *rest), a[h - b:].reshape(-1, *rest),
                           a[b:h - b, :b].reshape(-1, *rest), a[b:h - b, w - b:].reshape(-1, *rest)])


def _otsu(x: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of float32 values in [0, 1]: the split that maximizes between-class variance."""
    scaled = cv2.min(x * np.float32(bins), float(bins) - 0.5)  # a value of exactly 1 goes in the last bin
    hist = cv2.calcHist([scaled], [0], None, [bins], [0, bins]).ravel().astype(np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * ((np.arange(bins) + 0.5) / bins))
    total, mean = w0[-1], m0[-1]
    between = (mean * w0 - total * m0) ** 2 / np.maximum(w0 * (total - w0), 1e-9)
    return float((np.argmax(between[:-1]) + 1) / bins)


# Skin in YCbCr (the box of Chai and Ngan), as lower/upper bounds of OpenCV's (Y, Cr, Cb) order; the bounds are
# exclusive, so each is moved one float step inwards for `inRange`, which includes them.
_SKIN_LO = tuple(float(np.nextafter(np.float32(v), np.float32(2))) for v in (0.2, 0.522, 0.302))
_SKIN_HI = (2.0, *(float(np.nextafter(np.float32(v), np.float32(-1))) for v in (0.678, 0.498)))


def _skin(ycc: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels (uint8, 0 or 255) of an (H, W, 3) Y/Cr/Cb image, opened to drop isolated pixels."""
    m = cv2.inRange(ycc, _SKIN_LO, _SKIN_HI)
    return cv2.morphologyEx(m, cv2.MORPH_OPEN, _square(3)) if cv2.countNonZero(m) else m


def standout(rgb: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, float, float, dict]:
    """How far each pixel stands out from the background: (contrast, smoothed, threshold, background level,
    working images for the later steps).

    Tone counts with the polarity the background implies (a light background is inverted); a colour
    difference counts too, so a red shirt on a grey floor of the same luminance still stands out.
    """
    h, w = rgb.shape[:2]
    b = _band(h, w, cfg.border_frac)
    f = rgb.astype(np.float32)
    f *= np.float32(1 / 255)
    bg = _channel_medians(_border(rgb, b)) * np.float32(1 / 255)
    ycc = cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb)  # Y is ITU-R 601 luma, as Pillow's convert("L")
    grey = cv2.extractChannel(ycc, 0)
    bg_grey = float(_LUMA @ bg)
    invert = bg_grey > cfg.light_background
    scale = np.float32(1 / max(bg_grey if invert else 1.0 - bg_grey, 0.25))
    tone = (np.float32(bg_grey) - grey if invert else grey - np.float32(bg_grey)) * scale
    colour = _channel_max(cv2.absdiff(f, (float(bg[0]), float(bg[1]), float(bg[2]), 0.0)))
    colour *= np.float32(cfg.colour_weight)
    contrast = cv2.min(cv2.max(tone, colour), 1.0)  # colour >= 0, so this is clipped to [0, 1]
    skin = None
    if cfg.skin:
        skin = _skin(ycc)
        # Only where skin is a minority of what stands out: a tan boot or a leather bag is all "skin".
        standing = contrast > cfg.min_contrast
        n = int(np.count_nonzero(standing))
        frac = np.count_nonzero(skin[standing]) / n if n else 0.0
        if cfg.skin_min < frac < cfg.skin_max:
            contrast[skin > 0] = 0
    k = _px(cfg.smooth_frac, contrast.shape)
    smooth = cv2.blur(contrast, (k, k), borderType=cv2.BORDER_REFLECT) if k > 1 else contrast
    edge = _border(smooth, b)
    med = _median(edge)
    noise = med + cfg.noise_k * 1.4826 * _median(cv2.absdiff(edge, med).ravel())
    # A textured background inflates the noise estimate; a clear bimodal split (Otsu) may still be lower
    # (and on a clean background the floor decides: no need to ask Otsu).
    threshold = cfg.min_contrast if noise <= cfg.min_contrast else max(cfg.min_contrast, min(noise, _otsu(smooth)))
    return contrast, smooth, threshold, med, {"rgb": f, "ycc": ycc, "skin": skin}


def _px(frac: float, shape: tuple[int, ...]) -> int:
    """An odd filter size for a fraction of the long side, so a 28 px thumbnail gets none and a photo some."""
    return 2 * int(frac * max(shape) / 2) + 1


@functools.cache
def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


def object_mask(smooth: np.ndarray, threshold: float, cfg: PreprocessConfig) -> np.ndarray | None:
    """The object as a uint8 0/1 mask (largest blob and its big companions, holes filled), or None."""
    mask = (smooth > threshold).view(np.uint8)
    close = _px(cfg.close_frac, smooth.shape)
    if close > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _square(close))
    # Parts a few pixels apart (a handle, the second shoe of a pair) are labelled as one blob.
    n, labels = cv2.connectedComponents(cv2.dilate(mask, _square(2 * _px(cfg.dilate_frac / 2, smooth.shape) + 1)),
                                        connectivity=8, ltype=cv2.CV_16U)
    if n <= 1:
        return None
    if n == 2:  # one blob (the usual case): its size is the mask's
        sizes = np.array([0.0, cv2.countNonZero(mask)])
    else:
        sizes = np.bincount((labels * mask).ravel(), minlength=n).astype(np.float64)
    sizes[0] = 0
    keep = (sizes >= cfg.keep_blob_frac * sizes.max()) & (sizes >= cfg.min_blob_frac * smooth.size)
    keep[0] = False
    if not keep.any():
        return None
    if not keep[1:].all():
        mask = keep.view(np.uint8)[labels] & mask
    return _fill_holes(mask)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background pockets that do not reach the frame belong to the garment (prints, folds)."""
    frame = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    if frame.all():
        # No background touches the frame: only a second pocket makes one of them a hole (as it always was).
        nh, _ = cv2.connectedComponents(1 - mask, connectivity=4)
        return np.ones_like(mask) if nh > 2 else mask
    # Flood the background from the frame (4-connected) through a 1 px margin; what it cannot reach is a hole.
    outside = cv2.copyMakeBorder(1 - mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    cv2.floodFill(outside, None, (0, 0), 0)
    return mask | outside[1:-1, 1:-1]


@functools.lru_cache(maxsize=8192)
def _resize_matrix(n_in: int, n_out: int, filt: Image.Resampling) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's 1-D resampling filter `filt` (BOX or BILINEAR), computed as Pillow's
    `precompute_coeffs` does: Pillow's resize of a float image is separable, so `Wy @ image @ Wx.T` is its result
    (to float rounding) without a round trip through Pillow."""
    support, kernel = _FILTERS[filt]
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    centre = (np.arange(n_out) + 0.5) * scale
    xmin = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C's (int) truncates, as here
    xmax = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    x = np.arange(n_in)
    inside = (x >= xmin[:, None]) & (x < xmax[:, None])
    w = np.where(inside, kernel((x[None, :] - centre[:, None] + 0.5) / filterscale), 0.0)
    total = w.sum(axis=1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total != 0).astype(np.float32)


_FILTERS = {
    Image.Resampling.BOX: (0.5, lambda x: ((x > -0.5) & (x <= 0.5)).astype(np.float64)),
    Image.Resampling.BILINEAR: (1.0, lambda x: np.maximum(1.0 - np.abs(x), 0.0)),
}


def _fit(obj: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize the cropped object so its long side is `object_long_side`, centred on a zero canvas."""
    h, w = obj.shape
    s = cfg.object_long_side / max(h, w)
    nw, nh = max(1, min(cfg.size, round(w * s))), max(1, min(cfg.size, round(h * s)))
    if (nw, nh) != (w, h):
        # Area-averaging when shrinking keeps thin straps and edges; bilinear when enlarging.
        filt = Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR
        obj = _resize_matrix(h, nh, filt) @ obj @ _resize_matrix(w, nw, filt).T
    out = np.zeros((cfg.size, cfg.size), np.float32)
    # An odd margin puts its extra pixel before the object, as Fashion-MNIST does.
    y, x = (cfg.size - nh + 1) // 2, (cfg.size - nw + 1) // 2
    out[y:y + nh, x:x + nw] = obj
    return out


def prepare_rgb(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """RGB uint8 (H, W, 3) photo -> float32 (size, size), normalized as in training."""
    rgb = _shrink_rgb(np.ascontiguousarray(rgb), cfg.work_long_side)
    contrast, smooth, threshold, level, work = standout(rgb, cfg)
    mask = object_mask(smooth, threshold, cfg)
    worn = False
    if mask is not None and cfg.garment:
        skin = work["skin"] if work["skin"] is not None else _skin(work["ycc"])
        cut = garment_extent(mask, work["rgb"], skin, colour_tol=cfg.garment_colour_tol)
        worn, mask = cut is not mask, cut
    if mask is None:
        # Nothing stands out: classify the whole frame rather than refuse (the label will be unsure).
        obj = contrast
    else:
        # Background level to zero: subtract what the background itself scores, drop everything off-object.
        obj = cv2.max(contrast - np.float32(level), 0.0)
        # Keep a thin margin so soft edges survive; a 28 px thumbnail keeps a 1 px halo.
        obj *= cv2.dilate(mask, _square(max(3, _px(cfg.dilate_frac, mask.shape))))
        x0, y0, w, h = cv2.boundingRect((obj > 0).view(np.uint8))
        if w and h:
            obj = obj[y0:y0 + h, x0:x0 + w]
        h, w = obj.shape
        if worn and w < cfg.garment_min_aspect * h:
            # Arms hang along a worn top; Fashion-MNIST's tops fill the frame, sleeves spread.
            obj = obj @ _resize_matrix(w, round(cfg.garment_min_aspect * h), Image.Resampling.BILINEAR).T
    x = _fit(np.ascontiguousarray(obj, dtype=np.float32), cfg)
    top = float(x.max())
    if top > 0:
        # Fashion-MNIST's brightest pixel is always ~255: stretch to full scale, within limits.
        x = np.clip(x * min(1.0 / top, cfg.max_gain), 0, 1)
    return ((x - cfg.mean) / cfg.std).astype(np.float32)


def prepare_image(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Decoded Pillow image -> float32 (size, size), normalized as in training."""
    return prepare_rgb(to_rgb(_shrink(img, cfg.work_long_side)), cfg)


def decode_rgb(data: bytes, cfg: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image file bytes -> RGB uint8 (H, W, 3) at the working size: what `prepare` segments. Raises only ImageError."""
    box = (cfg.work_long_side, cfg.work_long_side)
    rgb = decode_jpeg_rgb(data, box=box, max_pixels=max_pixels)
    if rgb is not None:
        return _shrink_rgb(rgb, cfg.work_long_side)
    img = decode_image(data, max_pixels=max_pixels, draft_size=box)
    try:
        return to_rgb(_shrink(img, cfg.work_long_side))
    except Exception as exc:  # noqa: BLE001 - an odd mode or a lying file fails its item
        raise ImageError(f"image could not be preprocessed: {type(exc).__name__}: {exc}") from None


def prepare(data: bytes, cfg: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image file bytes -> float32 (size, size) network input. Raises only ImageError."""
    rgb = decode_rgb(data, cfg, max_pixels=max_pixels)
    try:
        return prepare_rgb(rgb, cfg)
    except Exception as exc:  # noqa: BLE001 - one odd image must fail as an item, never crash the batch
        raise ImageError(f"image could not be preprocessed: {type(exc).__name__}: {exc}") from None


def to_batch(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack prepared arrays into a C-contiguous float32 (N, C, S, S) batch: grey (S, S) ones gain their channel,
    (C, S, S) ones (the photo model's) stack as they are."""
    if len(arrays) == 0:
        return np.zeros((0, 1, 28, 28), np.float32)
    stacked = np.stack(arrays)
    return np.ascontiguousarray(stacked[:, None] if stacked.ndim == 3 else stacked, dtype=np.float32)


def decode_step(data: bytes, cfg: PreprocessConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`prepare`'s first step alone (the bench times the two apart): decode and shrink to the working size."""
    return decode_rgb(data, cfg, max_pixels=max_pixels)


def prepare_step(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """`prepare`'s second step alone: segment, crop, fit and normalise a decoded photo."""
    return prepare_rgb(rgb, cfg)


def draft_side(cfg: PreprocessConfig) -> int:
    """The box side JPEGs are draft-decoded to cover (the working size)."""
    return cfg.work_long_side


def sample_input(images: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """A manifest sample's raw (N, S, S) uint8 Fashion-MNIST pixels -> the normalised (N, 1, S, S) batch."""
    x = (images.astype(np.float32) * np.float32(1 / 255) - cfg.mean) / cfg.std
    return np.ascontiguousarray(x[:, None], dtype=np.float32)
