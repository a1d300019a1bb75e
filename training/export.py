"""Export a trained model to every backend's file, measure each, and write weights/manifest.json."""
from __future__ import annotations

import datetime as dt
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.images.preprocess import PreprocessConfig
from pipeline.inference.backends import BACKENDS, load_backend
from pipeline.inference.manifest import FORMAT, MANIFEST_NAME, file_entry, load_manifest
from pipeline.inference.model import fuse_for_inference
from training import data, report
from training.quantize import choose_int8

FILES = {"eager": "model.pt", "torchscript": "model.ts", "onnx": "model.onnx", "int8": "model.int8.onnx",
         "sample": "sample.npz"}
ONNX_OPSET = 18


def write_sample(images: np.ndarray, labels: np.ndarray, path: Path, per_class: int = 100, seed: int = 0) -> None:
    """A fixed, class-balanced sample of test images (uint8 28x28 + labels) for benchmarks and tests."""
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                  for c in range(10)]))
    np.savez_compressed(path, images=images[idx], labels=labels[idx].astype(np.int64), index=idx)


def export_torch(model: torch.nn.Module, out: Path) -> torch.nn.Module:
    """Write the state dict (eager) and a traced TorchScript of the BN-folded model; return the folded model."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / FILES["eager"])
    fused = fuse_for_inference(model)
    example = torch.zeros(2, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit prints a deprecation notice; the file format is what we need
        torch.jit.trace(fused, example).save(str(out / FILES["torchscript"]))
    return fused


def export_onnx(fused: torch.nn.Module, path: Path) -> None:
    """ONNX with a dynamic batch axis; input 'input' (N,1,28,28), output 'logits' (N,10)."""
    from torch.export import Dim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fused, (torch.zeros(2, 1, 28, 28),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_shapes={"x": {0: Dim("batch")}},
                          opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False)


def backend_accuracy(out: Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of every backend, each loaded the way a worker loads it (checksums included)."""
    manifest = load_manifest(out)
    acc = {}
    for name in BACKENDS:
        backend = load_backend(name, manifest=manifest, threads=torch.get_num_threads())
        pred = np.concatenate([backend.predict(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
        acc[name] = round(float((pred == y).mean()), 4)
    return acc


def export_all(model: torch.nn.Module, arch: dict[str, Any], out: Path, calib_images: np.ndarray,
               test: tuple[np.ndarray, np.ndarray], training: dict[str, Any], quick: bool = False,
               preprocess: PreprocessConfig | None = None) -> dict[str, Any]:
    """Write model.pt, model.ts, model.onnx, model.int8.onnx, sample.npz and manifest.json into `out`.

    `preprocess` is the configuration the model was trained with (default: `PreprocessConfig()`).
    """
    out.mkdir(parents=True, exist_ok=True)
    test_x, test_y = test
    if quick:
        test_x, test_y = test_x[:500], test_y[:500]
    fused = export_torch(model, out)
    export_onnx(fused, out / FILES["onnx"])
    rng = np.random.default_rng(training.get("seed", 0))
    calib = data.to_tensor_input(calib_images[rng.choice(len(calib_images), 64 if quick else 1000, replace=False)])
    x_test = data.to_tensor_input(test_x)
    with tempfile.TemporaryDirectory() as tmp:
        int8_choice = choose_int8(out / FILES["onnx"], out / FILES["int8"], calib, x_test, test_y,
                                  Path(tmp), quick=quick)
    write_sample(test[0], test[1], out / FILES["sample"], per_class=10 if quick else 100)
    pre = preprocess or PreprocessConfig()
    if (pre.mean, pre.std) != (data.MEAN, data.STD):
        raise RuntimeError("PreprocessConfig's mean/std differ from training's; keep them equal")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "arch": arch,
        "classes": list(report.CLASSES),
        "preprocess": pre.to_dict(),
        "files": {k: file_entry(out, out / v) for k, v in FILES.items()},
        "accuracy": {},
        "int8": int8_choice,
        "training": training,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    split = "fashion_mnist_test" if not quick else "fashion_mnist_test_first500"
    manifest["accuracy"] = {split: backend_accuracy(out, x_test, test_y)}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["accuracy"]), flush=True)
    return manifest
