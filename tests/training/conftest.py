"""Fixtures for training tests: a tiny synthetic Fashion-MNIST in IDX gz format (never the real one)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def synthetic(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One bright rectangle per image; its shape depends on the class."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(10):
        for _ in range(n_per_class):
            img = np.zeros((28, 28), np.uint8)
            h, w = 6 + 2 * c, 26 - 2 * c
            y, x = rng.integers(0, 28 - h + 1), rng.integers(0, 28 - w + 1)
            img[y:y + h, x:x + w] = rng.integers(120, 256)
            images.append(img)
            labels.append(c)
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the four IDX .gz files of a small synthetic data set."""
    root = tmp_path_factory.mktemp("fashion")
    for split, names, n, seed in (("train", ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), 20, 1),
                                  ("test", ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), 12, 2)):
        x, y = synthetic(n, seed)
        write_idx(root / names[0], x)
        write_idx(root / names[1], y)
    return root


@pytest.fixture(scope="session")
def dry_run_weights(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of `training.train --dry-run` on the synthetic data."""
    from training.train import main

    out = tmp_path_factory.mktemp("dry")
    assert main(["--dry-run", "--quiet", "--data-dir", str(fashion_dir), "--val-size", "40",
                 "--out", str(out)]) == 0
    return out
