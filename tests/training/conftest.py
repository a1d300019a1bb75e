"""Fixtures for training tests: a tiny synthetic Fashion-MNIST in IDX gz format (never the real one)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import synthetic_fashion


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the four IDX .gz files of a small synthetic data set."""
    root = tmp_path_factory.mktemp("fashion")
    for split, names, n, seed in (("train", ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), 20, 1),
                                  ("test", ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), 12, 2)):
        x, y = synthetic_fashion(n, seed)
        write_idx(root / names[0], x)
        write_idx(root / names[1], y)
    return root


@pytest.fixture(scope="session")
def dry_run_weights(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of `training.train --dry-run` on the synthetic data."""
    from training.train import main

    out = tmp_path_factory.mktemp("dry")
    assert main(["--dry-run", "--quiet", "--data-dir", str(fashion_dir), "--val-size", "40",
                 "--channels", "8", "16", "32", "--out", str(out)]) == 0
    return out
