"""Which garment a photo of a person is about, and where it ends (used by `pipeline.images.preprocess`).

Catalogue shots show a model: the object mask then runs from the hair to the shoes, and fitted to 28 px
the top garment becomes a narrow column with a head above it and trousers below: a Bag, a Dress or a
Shirt to a Fashion-MNIST network. When a face is found (a skin blob near the top of the object, roughly
centred), everything above the chin goes, and the garment just below the neck is followed down while the
rows keep its colour; where they stop (the waistband, legs of another colour) the mask is cut.

Pure OpenCV/numpy on the working-resolution arrays; no state. Photos without a face are left alone.
"""
from __future__ import annotations

import cv2
import numpy as np


def find_face(mask: np.ndarray, skin: np.ndarray, top_frac: float = 0.35, min_area: float = 0.002,
              max_area_share: float = 0.25, min_aspect: float = 1.25) -> tuple[int, int, int] | None:
    """(top row, bottom row, centre column) of the face-like skin blob in the object's upper part, or None.

    `mask` and `skin` are uint8 (non-zero = set). Only a tall object (height >= `min_aspect` x width) can be a
    person. The blob must start in the upper `top_frac` of the object's bounding box (or just above it: a face
    zeroed as skin may sit above the hair-less mask), lie in its middle half horizontally, cover at least
    `min_area` of the frame and at most `max_area_share` of the object; the topmost such blob wins.
    """
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0:
        return None
    x1 = x0 + w - 1
    if h < min_aspect * w:
        return None  # a standing person is tall; shoes, bags and garments laid flat mostly are not
    if cv2.countNonZero(skin) < min_area * mask.size:
        return None  # not even all the skin together would be big enough for a face
    n, _, stats, centroids = cv2.connectedComponentsWithStats(skin, connectivity=4)
    if n <= 1:
        return None
    left, top, bw, bh, area = (stats[1:, i] for i in range(5))
    bottom, cx = top + bh - 1, centroids[1:, 0]
    # A face: not a speck, far smaller than the garment (a tan garment is all "skin"), narrow and at least as
    # tall as about half its width (a stripe is not), high on the object and near its middle.
    ok = ((area >= min_area * mask.size) & (area <= max_area_share * np.count_nonzero(mask))
          & (bw <= 0.4 * w) & (bh >= 0.6 * bw)
          & (top <= y0 + top_frac * h) & (bottom >= y0 - 0.05 * h) & (np.abs(cx - (x0 + x1) / 2) <= w / 4))
    if not ok.any():
        return None
    i = int(np.flatnonzero(ok)[np.argmin(top[ok])])  # the topmost; the first in scan order on a tie
    return int(top[i]), int(bottom[i]), round(float(cx[i]))


def garment_extent(mask: np.ndarray, rgb: np.ndarray, skin: np.ndarray, *, max_chin_frac: float = 0.45,
                   colour_tol: float = 0.2, min_share: float = 0.15, run_frac: float = 0.06,
                   min_keep_frac: float = 0.25) -> np.ndarray:
    """The mask (uint8 0/1) cut to the garment worn below a detected face (the same object if there is no face).

    `rgb` is the (H, W, 3) float32 image in [0, 1], `skin` the skin-coloured pixels (uint8, non-zero = skin).
    The rows below the chin are scanned downward; a row belongs to the garment while at least `min_share` of
    its object pixels are within `colour_tol` (max over channels, on a smoothed image) of the chest colour; a
    run of `run_frac` of the height below that ends the garment. Nothing is cut above `min_keep_frac` of the
    height below the chin, so a short mismatch near the neck (a collar, a print) cannot empty the mask.
    """
    face = find_face(mask, skin)
    if face is None:
        return mask
    _, y0, _, hh = cv2.boundingRect(mask)
    chin = min(face[1] + 1, y0 + int(max_chin_frac * hh))
    out = np.where(skin > 0, 0, mask).astype(np.uint8)
    out[:chin] = 0
    rows = np.flatnonzero(out.any(axis=1))
    if len(rows) < 8:
        return mask
    top, bottom = rows[0], rows[-1]
    height = bottom - top + 1
    # The garment's colour: the median of the rows just below the chin (shoulders and chest, all of them,
    # so a print on the chest does not become the reference), on a smoothed image (checks, knit, folds).
    smooth = cv2.blur(rgb, (7, 7), borderType=cv2.BORDER_REFLECT)
    band = out.copy()
    band[top + max(2, height // 8):] = 0
    if not band.any():
        return mask
    chest = np.median(smooth[band > 0], axis=0)
    d0, d1, d2 = cv2.split(cv2.absdiff(smooth, (float(chest[0]), float(chest[1]), float(chest[2]), 0.0)))
    similar = (cv2.max(cv2.max(d0, d1), d2) < colour_tol) & (out > 0)
    counts = np.count_nonzero(out, axis=1)
    share = np.where(counts > 0, np.count_nonzero(similar, axis=1) / np.maximum(counts, 1), 0.0)
    run = max(2, int(run_frac * height))
    start = top + int(min_keep_frac * height)
    low = share < min_share
    for r in range(start, bottom - run + 2):
        if low[r:r + run].all():
            out[r:] = 0
            break
    # Keep the largest connected piece: a hand or a strap cut off by the scan is not the garment.
    n, labels = cv2.connectedComponents(out, connectivity=4, ltype=cv2.CV_16U)
    if n > 2:
        sizes = np.bincount(labels.ravel(), minlength=n)
        out = (labels == 1 + int(np.argmax(sizes[1:]))).view(np.uint8)
    return out if np.count_nonzero(out) >= 0.15 * np.count_nonzero(mask) else mask
