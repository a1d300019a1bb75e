"""The preprocessing constants (`pipeline.images.preprocess`), on their own so that reading a weights manifest
(the web service does, for the class names) needs neither OpenCV nor the image code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network's input per image: one grey channel, `size` square."""
        return (1, self.size, self.size)

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
