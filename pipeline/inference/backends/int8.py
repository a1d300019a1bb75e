"""INT8 backend: the statically quantized ONNX model, on ONNX Runtime's CPU provider only."""
from __future__ import annotations

from pipeline.inference.backends import BackendUnavailable
from pipeline.inference.backends.onnx import OrtBackend, session
from pipeline.inference.manifest import Manifest, verified_path


def load(manifest: Manifest, *, device: str = "cpu", threads: int | None = None) -> OrtBackend:
    """Load model.int8.onnx; refuses device='cuda' (the quantized kernels here are CPU kernels)."""
    if device != "cpu":
        raise BackendUnavailable("the int8 backend runs on the CPU only; use 'onnx' or 'eager' for device='cuda'")
    path = verified_path(manifest, "int8")
    return OrtBackend("int8", session(path, "cpu", threads), "cpu", manifest.input_shape)
