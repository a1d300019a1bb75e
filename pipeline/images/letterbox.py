"""The photo model's preprocessing: decode near the input size, letterbox to a square, normalise.

Pure (bytes in, array out). No segmentation: an ImageNet-pretrained network wants the photo as it is, whole,
with its aspect ratio kept. JPEGs decode at the DCT scale that still covers the input size (draft scaling), so a
12 MP phone photo costs little more than a thumbnail. The pad around the shrunk photo takes the median colour
of the photo's own border, so a catalogue shot on white stays on white and a garment on a bed stays on the bed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from pipeline.images.imaging import DEFAULT_MAX_PIXELS, ImageError, decode_image, decode_jpeg_rgb

KIND = "letterbox"


@dataclass(frozen=True)
class LetterboxConfig:
    """The photo model's input: `size` x `size` RGB, (x/255 - mean) / std, as recorded in its manifest."""

    kind: str = KIND
    size: int = 224
    mean: float = 0.5  # (x - 0.5) / 0.5 beat ImageNet's mean/std by 2.6 points on real photos (issue 19's probe)
    std: float = 0.5
    border_frac: float = 0.03  # the band of the shrunk photo whose median colour fills the letterbox

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network's input per image: three channels, `size` square."""
        return (3, self.size, self.size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LetterboxConfig":
        """Rebuild from `to_dict()` output; unknown keys are an error so a newer manifest fails loudly."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; this build knows {sorted(names)}")
        if d.get("kind", KIND) != KIND:
            raise ValueError(f"not a letterbox configuration: kind={d.get('kind')!r}")
        return cls(**d)


def decode_rgb(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An upright RGB uint8 (H, W, 3) array, JPEGs decoded at the smallest DCT scale that still covers `size`."""
    rgb = decode_jpeg_rgb(data, box=(size, size), max_pixels=max_pixels)
    if rgb is None:
        img = decode_image(data, max_pixels=max_pixels, draft_size=(size, size))
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # A transparent background reads as white, as a cut-out garment is meant to be seen.
            from PIL import Image

            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba)
        rgb = np.asarray(img.convert("RGB"))
    return rgb


def letterbox(rgb: np.ndarray, cfg: LetterboxConfig) -> np.ndarray:
    """Shrink (area) or enlarge (linear) `rgb` so its long side is `cfg.size`, centred on a square padded with
    the median colour of its border; uint8 (size, size, 3)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = cfg.size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else rgb
    band = max(1, round(cfg.border_frac * cfg.size))
    border = np.concatenate([small[:band].reshape(-1, 3), small[-band:].reshape(-1, 3),
                             small[:, :band].reshape(-1, 3), small[:, -band:].reshape(-1, 3)])
    fill = np.median(border, axis=0).astype(np.uint8)
    out = np.empty((cfg.size, cfg.size, 3), np.uint8)
    out[:] = fill
    y0, x0 = (cfg.size - nh) // 2, (cfg.size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def normalise(square: np.ndarray, cfg: LetterboxConfig) -> np.ndarray:
    """uint8 (S, S, 3) -> float32 (3, S, S), (x/255 - mean) / std."""
    x = square.astype(np.float32).transpose(2, 0, 1)
    return (x * (1.0 / (255.0 * cfg.std)) - cfg.mean / cfg.std).astype(np.float32, copy=False)


def prepare_photo(data: bytes, cfg: LetterboxConfig, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image bytes -> the photo model's (3, S, S) float32 input. Raises ImageError for a bad image."""
    return normalise(letterbox(decode_rgb(data, cfg.size, max_pixels), cfg), cfg)


def prepare(data: bytes, cfg: LetterboxConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The preparer `pipeline.images.kinds` calls for kind "letterbox": `prepare_photo`, raising only ImageError."""
    try:
        return prepare_photo(data, cfg, max_pixels)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd image must fail as an item, never crash the batch
        raise ImageError(f"image could not be preprocessed: {type(exc).__name__}: {exc}") from None


def decode_step(data: bytes, cfg: LetterboxConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`prepare`'s first step alone (the bench times the two apart): decode near the input size."""
    return decode_rgb(data, cfg.size, max_pixels)


def prepare_step(rgb: np.ndarray, cfg: LetterboxConfig) -> np.ndarray:
    """`prepare`'s second step alone: letterbox and normalise a decoded photo."""
    return normalise(letterbox(rgb, cfg), cfg)


def draft_side(cfg: LetterboxConfig) -> int:
    """The box side JPEGs are draft-decoded to cover (the input size)."""
    return cfg.size


def sample_input(images: np.ndarray, cfg: LetterboxConfig) -> np.ndarray:
    """A manifest sample's letterboxed (N, S, S, 3) uint8 squares -> the normalised (N, 3, S, S) batch."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x * (1.0 / (255.0 * cfg.std)) - cfg.mean / cfg.std, dtype=np.float32)
