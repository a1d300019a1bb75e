"""Inference backends: one interface, one module per runtime, heavy imports only when a backend loads.

    backend = load_backend("onnx", settings.weights_dir, threads=1)
    probs = backend.predict(to_batch(arrays))   # (N, 10) float32, rows sum to 1
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.settings import BACKENDS

__all__ = ["BACKENDS", "DEVICES", "Backend", "BackendUnavailable", "check_batch", "load_backend", "softmax"]
DEVICES: tuple[str, ...] = ("cpu", "cuda")


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (no CUDA, a missing package); the message says what is missing."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model: `predict` maps a (N,1,28,28) float32 batch to (N,10) float32 probabilities."""

    name: str
    device: str

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32, copy=False)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def check_batch(batch: np.ndarray) -> np.ndarray:
    """Validate a (N,1,28,28) batch and return it as C-contiguous float32."""
    if batch.ndim != 4 or batch.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected a batch of shape (N, 1, 28, 28), got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


def load_backend(name: str, weights_dir: Path | None = None, *, device: str = "cpu",
                 threads: int | None = None, manifest=None) -> Backend:
    """Load backend `name` after verifying its file's checksum against the manifest.

    `threads` sets intra-op threads (inter-op is 1); `device="cuda"` raises BackendUnavailable without CUDA.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if manifest is None:
        from pipeline.inference.manifest import load_manifest

        if weights_dir is None:
            raise ValueError("load_backend needs a weights directory or a loaded manifest")
        manifest = load_manifest(weights_dir)
    module = importlib.import_module(f"pipeline.inference.backends.{name}")
    return module.load(manifest, device=device, threads=threads)
