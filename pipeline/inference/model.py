"""The classifier: a small VGG-style CNN for 28x28 grey images (Fashion-MNIST layout).

The model is built only from keyword arguments; the weights manifest records them (`arch.args`),
so any loader rebuilds the exact network from the manifest alone.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCH_NAME = "fashion_vgg"
DEFAULT_ARGS: dict[str, Any] = {"channels": [32, 64, 128], "num_classes": 10, "dropout": 0.3, "mirror": False}


def _stage(c_in: int, c_out: int) -> list[nn.Module]:
    # Two 3x3 convolutions see a 5x5 neighbourhood at the cost of 18 weights per channel pair.
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class FashionCNN(nn.Module):
    """Conv stages (2 convs each, max-pool between stages), global average pool, linear head; returns logits.

    With `mirror`, inference averages the logits of each image and of its left-right mirror image (the
    training augmentation flips half the images, so both views are ones the network knows); this is part
    of the network, so every exported backend does the same. Training sees one view, as before.
    """

    def __init__(self, channels: list[int] | tuple[int, ...] = (32, 64, 128), num_classes: int = 10,
                 dropout: float = 0.3, mirror: bool = False) -> None:
        super().__init__()
        self.mirror = mirror
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(channels):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += _stage(c_in, c_out)
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mirror and not self.training:
            # One batch of 2N through the convolutions is cheaper than two passes of N.
            both = self.logits(torch.cat([x, x.flip(3)]))
            return (both[: x.shape[0]] + both[x.shape[0]:]) / 2
        return self.logits(x)


def build(**args: Any) -> nn.Module:
    """The network from its manifest arguments (pipeline/inference/architectures.py calls this)."""
    return FashionCNN(**{**DEFAULT_ARGS, **args})


def build_model(name: str = ARCH_NAME, args: dict[str, Any] | None = None) -> nn.Module:
    """Build the network named in a manifest's `arch` from its recorded arguments."""
    if name != ARCH_NAME:
        raise ValueError(f"unknown architecture {name!r}; this build knows {ARCH_NAME!r}")
    return FashionCNN(**{**DEFAULT_ARGS, **(args or {})})


def fuse_for_inference(model: FashionCNN) -> nn.Module:
    """Return an eval-mode copy with every BatchNorm folded into the convolution before it.

    Folding is exact in eval mode; it removes a layer per conv from the exported graphs and lets
    INT8 quantization see one conv (with bias) instead of a conv followed by an affine op.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    mods = list(fused.features)
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        if isinstance(mods[i], nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(mods[i], mods[i + 1]))
            i += 2
        else:
            out.append(mods[i])
            i += 1
    fused.features = nn.Sequential(*out)
    return fused
