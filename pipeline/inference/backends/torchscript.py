"""TorchScript backend: a self-contained graph (model.ts); needs torch but not pipeline.inference.model."""
from __future__ import annotations

from pipeline.inference.backends._torch import TorchBackend, torch_device
from pipeline.inference.manifest import Manifest, verified_path


def load(manifest: Manifest, *, device: str = "cpu", threads: int | None = None) -> TorchBackend:
    """Load the TorchScript file onto `device`."""
    path = verified_path(manifest, "torchscript")
    dev = torch_device(device, threads)
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice, once per worker
        module = torch.jit.load(str(path), map_location=dev)
    return TorchBackend("torchscript", module.eval(), dev, manifest.input_shape)
