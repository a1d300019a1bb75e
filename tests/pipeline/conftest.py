"""Fixtures for pipeline tests: a small exported model made from synthetic data (no downloads, no ../shared)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def synthetic_fashion(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny Fashion-MNIST stand-in: one bright rectangle per image whose shape depends on the class."""
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
    return np.stack(images), np.array(labels, np.int64)


@pytest.fixture(scope="session")
def exported_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights dir with every backend's file and a manifest, from an untrained model (quick export)."""
    import torch

    from pipeline.model import ARCH_NAME, DEFAULT_ARGS, build_model
    from training.export import export_all

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("weights")
    train_x, _ = synthetic_fashion(10, seed=1)
    test = synthetic_fashion(10, seed=2)
    arch = {"name": ARCH_NAME, "args": dict(DEFAULT_ARGS)}
    export_all(build_model(arch["name"], arch["args"]), arch, out, train_x, test, {"seed": 0}, quick=True)
    return out


@pytest.fixture(scope="session")
def shipped_manifest():
    """The repository's trained weights, or skip if they have not been exported yet."""
    from pipeline.manifest import load_manifest

    if not (REPO_WEIGHTS / "manifest.json").exists():
        pytest.skip("weights/manifest.json not present; run python -m training.train")
    return load_manifest(REPO_WEIGHTS)
