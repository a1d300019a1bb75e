"""Which garment a photo of a person is about, and where it ends (used by `pipeline.images.preprocess`).

Catalogue shots show a model: the object mask then runs from the hair to the shoes, and fitted to 28 px
the top garment becomes a narrow column with a head above it and trousers below: a Bag, a Dress or a
Shirt to a Fashion-MNIST network. When a face is found (a skin blob near the top of the object, roughly
centred), everything above the chin goes, and the garment just below the neck is followed down while the
rows keep its colour; where they stop (the waistband, legs of another colour) the mask is cut.

Pure numpy/scipy on the working-resolution arrays; no state. Photos without a face are left alone.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def find_face(mask: np.ndarray, skin: np.ndarray, top_frac: float = 0.35, min_area: float = 0.002,
              max_area_share: float = 0.25, min_aspect: float = 1.25) -> tuple[int, int, int] | None:
    """(top row, bottom row, centre column) of the face-like skin blob in the object's upper part, or None.

    Only a tall object (height >= `min_aspect` x width) can be a person. The blob must start in the upper `top_frac` of the object's bounding box (or just above it: a face
    zeroed as skin may sit above the hair-less mask), lie in its middle half horizontally, cover at least
    `min_area` of the frame and at most `max_area_share` of the object; the topmost such blob wins.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    h, w = y1 - y0 + 1, x1 - x0 + 1
    if h < min_aspect * w:
        return None  # a standing person is tall; shoes, bags and garments laid flat mostly are not
    labels, n = ndimage.label(skin)
    if n == 0:
        return None
    best: tuple[int, int, int] | None = None
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        part = labels[sl] == i
        area = int(part.sum())
        # A face: not a speck, and far smaller than the garment (a tan garment is all "skin").
        if area < min_area * mask.size or area > max_area_share * mask.sum():
            continue
        top, bottom = sl[0].start, sl[0].stop - 1
        bw, bh = sl[1].stop - sl[1].start, bottom - top + 1
        # A face and neck are narrow and at least as tall as about half their width (a stripe is not).
        if bw > 0.4 * w or bh < 0.6 * bw:
            continue
        cx = sl[1].start + float(np.nonzero(part)[1].mean())
        if top > y0 + top_frac * h or bottom < y0 - 0.05 * h or abs(cx - (x0 + x1) / 2) > w / 4:
            continue
        if best is None or top < best[0]:
            best = (top, bottom, round(cx))
    return best


def garment_extent(mask: np.ndarray, planes: np.ndarray, skin: np.ndarray, *, max_chin_frac: float = 0.45,
                   colour_tol: float = 0.2, min_share: float = 0.15, run_frac: float = 0.06,
                   min_keep_frac: float = 0.25) -> np.ndarray:
    """The mask cut to the garment worn below a detected face (unchanged if there is no face).

    `planes` is the (3, H, W) RGB image in [0, 1], `skin` the skin-coloured pixels. The rows below the
    chin are scanned downward; a row belongs to the garment while at least `min_share` of its object
    pixels are within `colour_tol` (max over channels, on a smoothed image) of the chest colour; a run of
    `run_frac` of the height below that ends the garment. Nothing is cut above `min_keep_frac` of the
    height below the chin, so a short mismatch near the neck (a collar, a print) cannot empty the mask.
    """
    face = find_face(mask, skin)
    if face is None:
        return mask
    ys = np.nonzero(mask.any(axis=1))[0]
    y0, y1 = ys.min(), ys.max()
    chin = min(face[1] + 1, y0 + int(max_chin_frac * (y1 - y0 + 1)))
    out = mask.copy()
    out[:chin] = False
    out &= ~skin
    rows = np.nonzero(out.any(axis=1))[0]
    if len(rows) < 8:
        return mask
    top, bottom = rows.min(), rows.max()
    height = bottom - top + 1
    # The garment's colour: the median of the rows just below the chin (shoulders and chest, all of them,
    # so a print on the chest does not become the reference), on a smoothed image (checks, knit, folds).
    smooth = np.stack([ndimage.uniform_filter(p, 7) for p in planes])
    band = out.copy()
    band[top + max(2, height // 8):] = False
    if not band.any():
        return mask
    chest = np.median(smooth[:, band], axis=1)
    similar = (np.abs(smooth - chest[:, None, None]).max(axis=0) < colour_tol) & out
    counts = out.sum(axis=1)
    share = np.where(counts > 0, similar.sum(axis=1) / np.maximum(counts, 1), 0.0)
    run = max(2, int(run_frac * height))
    start = top + int(min_keep_frac * height)
    low = share < min_share
    for r in range(start, bottom - run + 2):
        if low[r:r + run].all():
            out[r:] = False
            break
    # Keep the largest connected piece: a hand or a strap cut off by the scan is not the garment.
    labels, n = ndimage.label(out)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        out = labels == int(np.argmax(sizes))
    return out if out.sum() >= 0.15 * mask.sum() else mask
