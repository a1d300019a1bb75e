"""Fixtures for pipeline tests: a small exported model made from synthetic data (no downloads, no ../shared)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import synthetic_fashion

REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


@pytest.fixture(scope="session")
def exported_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights dir with every backend's file and a manifest, from an untrained model (quick export)."""
    import torch

    from pipeline.inference.model import ARCH_NAME, DEFAULT_ARGS, build_model
    from training.export import export_all

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("weights") / "fmnist"  # a model folder, as under FB_WEIGHTS_DIR
    train_x, _ = synthetic_fashion(10, seed=1)
    test = synthetic_fashion(10, seed=2)
    arch = {"name": ARCH_NAME, "args": dict(DEFAULT_ARGS)}
    export_all(build_model(arch["name"], arch["args"]), arch, out, train_x, test, {"seed": 0}, quick=True)
    return out


@pytest.fixture(scope="session")
def exported_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo model folder: EfficientNet-Lite0 with a random head at 64 px, every backend's file (quick)."""
    from tests.photo_export import export_photo

    return export_photo(tmp_path_factory.mktemp("weights") / "photo", size=64, samples=8)


def shipped(model: str):
    """The repository's weights of `model` (weights/<model>/), or skip if they have not been exported yet."""
    from pipeline.inference.manifest import load_manifest

    if not (REPO_WEIGHTS / model / "manifest.json").exists():
        pytest.skip(f"weights/{model}/manifest.json not present; export the {model} model")
    return load_manifest(REPO_WEIGHTS / model)


@pytest.fixture(scope="session")
def shipped_manifest():
    """The Fashion-MNIST CNN's shipped weights (weights/fmnist)."""
    return shipped("fmnist")


@pytest.fixture(scope="session", params=["fmnist", "photo"])
def shipped_model(request):
    """Each shipped model's manifest in turn."""
    return shipped(request.param)
