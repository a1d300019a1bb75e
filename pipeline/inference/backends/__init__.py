"""Inference backends: one interface, one module per runtime, heavy imports only when a backend loads.

    backend = load_backend("onnx", settings.weights_dir / "photo", threads=1)
    probs = backend.predict(to_batch(arrays))   # (N, C, S, S) in, (N, 10) float32 out, rows sum to 1

The input shape comes from the model's manifest. On CUDA the torch backends run in fp16 (module and input
`.half()`); `fallback="cpu"` (FB_GPU_FALLBACK) lets a request for CUDA on a host without it load on the CPU in
fp32 instead, with a warning in the log.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.settings import BACKENDS

__all__ = ["BACKENDS", "DEVICES", "Backend", "BackendUnavailable", "check_batch", "load_backend", "softmax"]
DEVICES: tuple[str, ...] = ("cpu", "cuda")
FALLBACKS: tuple[str, ...] = ("none", "cpu")
log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (no CUDA, a missing package); the message says what is missing."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model: `predict` maps a (N, C, S, S) float32 batch (its manifest's input shape) to (N, classes)
    float32 probabilities."""

    name: str
    device: str

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32, copy=False)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def check_batch(batch: np.ndarray, shape: tuple[int, ...] = (1, 28, 28)) -> np.ndarray:
    """Validate a (N, *shape) batch (`shape`: the model's input, from its manifest); return C-contiguous float32."""
    if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(shape):
        raise ValueError(f"expected a batch of shape (N, {', '.join(map(str, shape))}), got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


def load_backend(name: str, weights_dir: Path | None = None, *, device: str = "cpu",
                 threads: int | None = None, manifest=None, fallback: str = "none") -> Backend:
    """Load backend `name` of the model in `weights_dir` (or `manifest`) after verifying its file's checksum.

    `threads` sets intra-op threads (inter-op is 1); `device="cuda"` raises BackendUnavailable without CUDA,
    unless `fallback="cpu"`: then it loads on the CPU (fp32) and logs a warning saying so.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback {fallback!r}; choose one of {', '.join(FALLBACKS)}")
    if manifest is None:
        from pipeline.inference.manifest import load_manifest

        if weights_dir is None:
            raise ValueError("load_backend needs a weights directory or a loaded manifest")
        manifest = load_manifest(weights_dir)
    module = importlib.import_module(f"pipeline.inference.backends.{name}")
    try:
        return module.load(manifest, device=device, threads=threads)
    except BackendUnavailable as exc:
        if device == "cpu" or fallback != "cpu":
            raise
        log.warning("GPU fallback: %s %s runs on the CPU in fp32, not on CUDA (FB_GPU_FALLBACK=cpu): %s",
                    manifest.name, name, exc)
        return module.load(manifest, device="cpu", threads=threads)
