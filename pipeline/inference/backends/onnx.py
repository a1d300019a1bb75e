"""ONNX Runtime backend (fp32): CPU, or CUDA through the CUDAExecutionProvider."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.inference.backends import BackendUnavailable, check_batch, softmax
from pipeline.inference.manifest import Manifest, verified_path


def session(path: Path, device: str, threads: int | None):
    """An InferenceSession on `device` with `threads` intra-op threads; BackendUnavailable if it cannot."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc}); install the extra: pip install "
                                 "'fashion-batch[worker]' (or onnxruntime-gpu for CUDA)") from None
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                "device 'cuda' requested but onnxruntime has no CUDAExecutionProvider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu or use device='cpu'")
        # CPU stays listed for any node the CUDA provider lacks; CUDA must still take the graph (checked below).
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if device == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        # ORT silently falls back to CPU when the CUDA provider fails to initialise (driver, libcudnn).
        raise BackendUnavailable(f"onnxruntime could not start CUDA for {path.name} (got {sess.get_providers()}); "
                                 "check the CUDA/cuDNN libraries or use device='cpu'")
    return sess


class OrtBackend:
    """Runs an ONNX model whose single input is the (N, C, S, S) batch and whose output is logits."""

    def __init__(self, name: str, sess, device: str, input_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        self.name = name
        self.device = device
        self.precision = "fp32" if name != "int8" else "int8"
        self._sess = sess
        self._input = sess.get_inputs()[0].name
        self.input_shape = tuple(input_shape)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 -> (N, classes) float32 probabilities."""
        (logits,) = self._sess.run(None, {self._input: check_batch(batch, self.input_shape)})
        return softmax(logits)


def load(manifest: Manifest, *, device: str = "cpu", threads: int | None = None) -> OrtBackend:
    """Load model.onnx after checking its digest."""
    path = verified_path(manifest, "onnx")
    return OrtBackend("onnx", session(path, device, threads), device, manifest.input_shape)
