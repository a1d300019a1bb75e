"""Backends: each loads, verifies its file, predicts probabilities; they agree; CUDA is refused cleanly."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.inference.backends import (
    BACKENDS,
    Backend,
    BackendUnavailable,
    load_backend,
)
from pipeline.inference.manifest import WeightsError, load_manifest
from pipeline.settings import load_settings


def batch(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 1, 28, 28)).astype(np.float32)


def test_importing_the_package_does_not_import_torch_or_onnxruntime():
    # Given a fresh interpreter / When pipeline.inference.backends is imported
    code = "import sys, pipeline.inference.backends; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # Then neither heavy runtime was loaded
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_returns_probabilities(exported_weights, name):
    # Given an exported model / When a backend loads and predicts a batch
    backend = load_backend(name, exported_weights, threads=1)
    probs = backend.predict(batch())
    # Then it is a Backend returning (N,10) float32 rows that sum to one
    assert isinstance(backend, Backend) and backend.name == name and backend.device == "cpu"
    assert probs.shape == (6, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and (probs >= 0).all()


def test_backend_refuses_a_tampered_file(exported_weights, tmp_path):
    # Given a weights dir whose TorchScript file was replaced
    import shutil

    root = shutil.copytree(exported_weights, tmp_path / "w")
    m = load_manifest(root)
    (root / m.files["torchscript"]["path"]).write_bytes(b"malicious")
    # When a worker loads it / Then it refuses with WeightsError before deserializing anything
    with pytest.raises(WeightsError, match="does not match"):
        load_backend("torchscript", root)


@pytest.mark.parametrize("name", ["eager", "torchscript", "onnx", "int8"])
def test_cuda_request_without_a_gpu_is_refused_cleanly(exported_weights, name):
    import torch

    if torch.cuda.is_available() and name != "int8":
        pytest.skip("this machine has CUDA")
    # Given no GPU (or the CPU-only int8 backend) / When CUDA is requested / Then BackendUnavailable says why
    with pytest.raises(BackendUnavailable, match="cuda|CUDA|CPU only"):
        load_backend(name, exported_weights, device="cuda")


def test_bad_names_and_shapes_are_value_errors(exported_weights):
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tensorrt", exported_weights)
    with pytest.raises(ValueError, match="unknown device"):
        load_backend("onnx", exported_weights, device="tpu")
    with pytest.raises(ValueError, match="shape"):
        load_backend("onnx", exported_weights).predict(np.zeros((2, 28, 28), np.float32))


def test_weights_dir_comes_from_the_settings(exported_weights):
    # Given FB_WEIGHTS_DIR (the folder of model folders) in the environment the settings are read from
    settings = load_settings({"FB_WEIGHTS_DIR": str(exported_weights.parent)})
    # When the backend loads from the settings' weights folder / Then it is that folder's model
    assert load_backend("onnx", settings.weights_dir / "fmnist").predict(batch(2)).shape == (2, 10)
    # And a call that names neither a folder nor a manifest is refused, rather than guessing one
    with pytest.raises(ValueError, match="weights directory"):
        load_backend("onnx")


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_of_every_shipped_model_gives_probabilities(shipped_model, name):
    # Given a shipped model (weights/fmnist, weights/photo) and its sample, in the model's own input shape
    from pipeline.inference.benchmark import load_sample

    x, _ = load_sample(shipped_model)
    # When one of its backends loads from the manifest alone and labels a few sample images
    backend = load_backend(name, manifest=shipped_model, threads=1)
    probs = backend.predict(x[:4])
    # Then it gives (N, 10) float32 probabilities
    assert x.shape[1:] == shipped_model.input_shape
    assert probs.shape == (4, 10) and probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-4)
    # And a batch in the other model's shape is refused, not silently run
    with pytest.raises(ValueError, match="shape"):
        backend.predict(np.zeros((1, 2, 8, 8), np.float32))


@pytest.mark.parametrize("name", BACKENDS)
def test_the_photo_model_loads_from_its_manifest_alone(exported_photo, name):
    # Given a photo model folder (EfficientNet-Lite0, letterbox preprocessing at 64 px) / When a backend loads it
    manifest = load_manifest(exported_photo)
    backend = load_backend(name, manifest=manifest, threads=1)
    # Then its input is (3, 64, 64), as the manifest says, and it gives probabilities
    assert manifest.name == "photo" and manifest.input_shape == (3, 64, 64)
    probs = backend.predict(np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32))
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)


@pytest.mark.parametrize("name", ["eager", "torchscript", "onnx"])
def test_the_gpu_path_falls_back_to_the_cpu_only_when_allowed(exported_photo, name, caplog):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback is not taken")
    manifest = load_manifest(exported_photo)
    # Given no GPU / When CUDA is asked for without the fallback / Then it is refused, as the GPU pool is
    with pytest.raises(BackendUnavailable):
        load_backend(name, manifest=manifest, device="cuda")
    # When it is asked for with fallback="cpu" (FB_GPU_FALLBACK=cpu)
    with caplog.at_level("WARNING", logger="pipeline.inference.backends"):
        backend = load_backend(name, manifest=manifest, device="cuda", fallback="cpu", threads=1)
    # Then it runs on the CPU in fp32, says so in the log, and gives probabilities
    assert backend.device == "cpu" and backend.precision == "fp32"
    assert any("GPU fallback" in r.getMessage() and "fp32" in r.getMessage() for r in caplog.records)
    probs = backend.predict(np.zeros((2, 3, 64, 64), np.float32))
    assert probs.shape == (2, 10) and probs.dtype == np.float32


def test_shipped_backends_agree_and_are_accurate_on_the_sample(shipped_manifest):
    # Given the shipped weights and the fixed Fashion-MNIST sample
    sample = np.load(shipped_manifest.root / shipped_manifest.files["sample"]["path"])
    cfg = shipped_manifest.preprocess
    x = ((sample["images"].astype(np.float32) / 255 - cfg.mean) / cfg.std)[:, None]
    # When every backend labels it
    labels = {n: load_backend(n, manifest=shipped_manifest, threads=1).predict(x).argmax(1) for n in BACKENDS}
    # Then they agree on (nearly) every label, and are right about as often as the manifest says
    for name in ("torchscript", "onnx"):
        assert (labels[name] == labels["eager"]).mean() >= 0.999, name
    assert (labels["int8"] == labels["eager"]).mean() >= 0.99
    assert (labels["eager"] == sample["labels"]).mean() >= 0.93
