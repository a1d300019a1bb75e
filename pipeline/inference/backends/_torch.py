"""What the two PyTorch backends share: device checks, thread settings, running a module."""
from __future__ import annotations

import numpy as np

from pipeline.inference.backends import BackendUnavailable, check_batch, softmax


def torch_device(device: str, threads: int | None):
    """Import torch, apply thread settings, and return a usable torch.device or raise BackendUnavailable."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"torch is not installed ({exc}); install the extra: "
                                 "pip install 'fashion-batch[worker]'") from None

    if threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # only settable before the first parallel op; the intra-op setting is what matters
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("device 'cuda' requested but torch sees no CUDA GPU "
                                 f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use device='cpu'")
    return torch.device(device)


class TorchBackend:
    """Runs a torch module (eager or TorchScript) that maps a batch to logits: fp16 on CUDA, fp32 on the CPU."""

    def __init__(self, name: str, module, device, input_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        self.name = name
        self.device = device.type
        self.precision = "fp16" if device.type == "cuda" else "fp32"
        # Half precision on the GPU: twice the tensor-core throughput and half the memory traffic; the
        # softmax is taken in fp32 on the host.
        self._module = module.half() if self.precision == "fp16" else module
        self._torch_device = device
        self.input_shape = tuple(input_shape)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 -> (N, classes) float32 probabilities."""
        import torch

        x = torch.from_numpy(check_batch(batch, self.input_shape)).to(self._torch_device)
        if self.precision == "fp16":
            x = x.half()
        with torch.inference_mode():
            logits = self._module(x)
        return softmax(logits.float().cpu().numpy())
