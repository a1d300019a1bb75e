"""PyTorch eager backend: rebuild the network from the manifest's arch and load the state dict."""
from __future__ import annotations

from pipeline.inference.backends._torch import TorchBackend, torch_device
from pipeline.inference.manifest import Manifest, verified_path


def load(manifest: Manifest, *, device: str = "cpu", threads: int | None = None) -> TorchBackend:
    """Load model.pt (a plain state dict) into the architecture the manifest names."""
    path = verified_path(manifest, "eager")
    dev = torch_device(device, threads)
    import torch

    from pipeline.inference.architectures import build_from_arch

    model = build_from_arch(manifest.arch)
    # weights_only: a state dict needs no pickled code, so refuse any.
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return TorchBackend("eager", model.eval().to(dev), dev, manifest.input_shape)
