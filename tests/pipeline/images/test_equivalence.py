"""The OpenCV preprocessing gives what the scipy/Pillow one it replaced gave (issue: twice the photos per core).

`data/equivalence-expected.npz` holds the arrays the previous release's `prepare` produced for the committed
scenes (`equivalence_sample.py`), the demo's sample photos and 300 Fashion-MNIST test images as PNGs. Labels
are compared through the shipped weights, so the test holds whatever the weights are.
On the full sets (realphoto-dev, the 10,000 Fashion-MNIST test PNGs) the README gives the figures of
`python -m training.prep_compare`.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.images.preprocess import prepare

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[3]


def _inputs(weights: Path) -> dict[str, bytes]:
    items: dict[str, bytes] = {}
    for zp in (DATA / "equivalence-photos.zip", ROOT / "pipeline/tools/samples/sample-photos.zip"):
        with zipfile.ZipFile(zp) as zf:
            items |= {f"{zp.name}:{n}": zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    for i, im in enumerate(np.load(weights / "sample.npz")["images"][:300]):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        items[f"fashion-mnist:{i}"] = buf.getvalue()
    return items


@pytest.fixture(scope="module")
def both(shipped_manifest):
    expected = np.load(DATA / "equivalence-expected.npz")
    items = _inputs(shipped_manifest.root)
    names = [str(n) for n in expected["names"]]
    assert sorted(names) == sorted(items), "the committed sample and its expected arrays disagree"
    new = np.stack([prepare(items[n], shipped_manifest.preprocess) for n in names])
    return names, expected["arrays"].astype(np.float32), new


def test_the_arrays_are_the_same_up_to_rounding(both):
    # Given the previous release's arrays (stored as float16) / When prepared now
    names, old, new = both
    diff = np.abs(old - new).max(axis=(1, 2))
    # Then nearly every image matches to float16 precision, and none is far off
    close = diff < 0.02
    assert close.mean() >= 0.97, [n for n, c in zip(names, close) if not c]
    assert np.abs(old - new).mean() < 0.005


def test_the_labels_are_the_same(both, shipped_manifest):
    # Given both sets of arrays / When the shipped weights label them
    from pipeline.inference.backends import load_backend

    names, old, new = both
    backend = load_backend("onnx", manifest=shipped_manifest, threads=1)
    a, b = (backend.predict(np.ascontiguousarray(x[:, None])).argmax(1) for x in (old, new))
    # Then at least 99% of the photos and of the Fashion-MNIST images get the same label
    photos = np.array([not n.startswith("fashion-mnist:") for n in names])
    for group in (photos, ~photos):
        assert (a[group] == b[group]).mean() >= 0.99, [n for n, g, x, y in zip(names, group, a, b) if g and x != y]
