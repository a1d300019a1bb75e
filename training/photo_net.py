"""The photo network cut in two for training on 2 cores: a frozen bottom whose output is cached, a trained top.

EfficientNet-Lite0's first `SPLIT` blocks (the 112-14 px stages, nine tenths of the compute) keep their
ImageNet weights and run once per training image; the last blocks (7x7), the 1x1 head convolution and the new
classifier are fine-tuned on the cached 7x7x192 maps. BatchNorm statistics stay frozen throughout (few photos,
small batches). The zero-shot head sums ImageNet's own classes into ours, as the issue's probe did.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.images.letterbox import LetterboxConfig, normalise

SPLIT = 12  # blocks[:12] frozen and cached (output 192 x 7 x 7 at 224 px); blocks[12:] trained

# ImageNet classes summed into ours for the zero-shot baseline (none is a shirt).
ZERO_SHOT = {
    0: [610],  # jersey, T-shirt
    1: [608],  # jean
    2: [841, 474],  # sweatshirt, cardigan
    3: [578, 689],  # gown, overskirt
    4: [869, 568, 617, 834],  # trench coat, fur coat, lab coat, suit
    5: [774],  # sandal
    6: [],
    7: [770],  # running shoe
    8: [748, 636, 414],  # purse, mailbag, backpack
    9: [514],  # cowboy boot
}


def bottom(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stem and the frozen blocks."""
    x = model._swish(model._bn0(model._conv_stem(x)))
    for block in model._blocks[:SPLIT]:
        x = block(x)
    return x


def top_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The trained blocks, head convolution and pooling: (N, 1280) features from cached maps."""
    n = len(model._blocks)
    rate = model._global_params.drop_connect_rate
    for idx in range(SPLIT, n):
        x = model._blocks[idx](x, drop_connect_rate=rate * idx / n if rate else None)
    x = model._swish(model._bn1(model._conv_head(x)))
    return model._avg_pooling(x).flatten(1)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters fine-tuning may change (everything after the split)."""
    mods = [*model._blocks[SPLIT:], model._conv_head, model._bn1, model._fc]
    return [p for m in mods for p in m.parameters()]


def set_train_mode(model: nn.Module) -> None:
    """Train mode for dropout and drop-connect, but every BatchNorm keeps its running statistics."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


class _Bottom(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bottom(self.model, x)


def cache_bottom(model: nn.Module, squares: np.ndarray, cfg: LetterboxConfig, batch: int = 32) -> np.ndarray:
    """float16 (N, 192, s, s) maps of the frozen bottom for uint8 squares (N, S, S, 3).

    The bottom runs in ONNX Runtime: its depthwise convolutions are about four times faster there than in
    PyTorch's CPU kernels, and this pass is most of a training run's compute.
    """
    import tempfile
    import warnings

    import onnxruntime as ort

    model.eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = f"{tmp}/bottom.onnx"
        from torch.export import Dim

        torch.onnx.export(_Bottom(model).eval(), (torch.zeros(2, 3, cfg.size, cfg.size),), path,
                          input_names=["input"], output_names=["maps"], dynamic_shapes={"x": {0: Dim("batch")}},
                          opset_version=18, dynamo=True, external_data=False, verbose=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(squares), batch):
        x = np.stack([normalise(s, cfg) for s in squares[i:i + batch]])
        out.append(sess.run(None, {"input": x})[0].astype(np.float16))
    return np.concatenate(out)


@torch.inference_mode()
def top_logits(model: nn.Module, maps: np.ndarray, batch: int = 256, head: nn.Module | None = None) -> np.ndarray:
    """Logits (eval mode) of cached maps through the top and `head` (default: the model's own classifier)."""
    model.eval()
    head = head or model._fc
    return np.concatenate([head(top_features(model, torch.from_numpy(maps[i:i + batch]).float())).numpy()
                           for i in range(0, len(maps), batch)])


def zero_shot_probs(imagenet_logits: np.ndarray) -> np.ndarray:
    """Our ten classes' probabilities from ImageNet logits: each class the sum of its ImageNet classes."""
    z = imagenet_logits - imagenet_logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    out = np.stack([p[:, ids].sum(1) if ids else np.zeros(len(p)) for _, ids in sorted(ZERO_SHOT.items())], 1)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)
