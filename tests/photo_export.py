"""A stand-in photo model for tests: EfficientNet-Lite0 with a random head, exported to the four backends' files,
a letterboxed sample and a manifest laid out as weights/photo/ is (no ImageNet weights, no training)."""
from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tests.helpers import garment_png

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {"eager": "model.pt", "torchscript": "model.ts", "onnx": "model.onnx", "int8": "model.int8.onnx",
         "sample": "sample.npz"}


def export_photo(out: Path, size: int = 224, seed: int = 0, samples: int = 20, serving: dict | None = None) -> Path:
    """Write model.pt, model.ts, model.onnx, model.int8.onnx, sample.npz and manifest.json into `out`."""
    import torch
    from torch.export import Dim

    from pipeline.images.letterbox import LetterboxConfig, decode_rgb, letterbox, sample_input
    from pipeline.inference.efficientnet import ARCH_NAME, DEFAULT_ARGS, build
    from pipeline.inference.manifest import FORMAT, MANIFEST_NAME, file_entry
    from training.quantize import quantize

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build(**DEFAULT_ARGS).eval()
    cfg = LetterboxConfig(size=size)
    torch.save(model.state_dict(), out / FILES["eager"])
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, example).save(str(out / FILES["torchscript"]))
        torch.onnx.export(model, (example,), str(out / FILES["onnx"]), input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: Dim("batch")},), opset_version=18,
                          dynamo=True, external_data=False, verbose=False)
    kinds = ["shirt", "trouser"]
    squares = np.stack([letterbox(decode_rgb(garment_png(kinds[i % 2], (100 + 7 * i, 140)), size), cfg)
                        for i in range(samples)])
    labels = np.array([0 if i % 2 == 0 else 1 for i in range(samples)], np.int64)
    np.savez_compressed(out / FILES["sample"], images=squares, labels=labels)
    with tempfile.TemporaryDirectory() as tmp:
        quantize(out / FILES["onnx"], out / FILES["int8"], sample_input(squares, cfg), "QDQ", False, Path(tmp))
    manifest = {
        "format": FORMAT, "name": out.name, "arch": {"name": ARCH_NAME, "args": dict(DEFAULT_ARGS)},
        "classes": CLASSES, "preprocess": cfg.to_dict(),
        "files": {k: file_entry(out, out / v) for k, v in FILES.items()},
        "accuracy": {}, "training": {"note": "a random-head stand-in made by tests/photo_export.py"},
    }
    if serving:
        manifest["serving"] = serving
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


if __name__ == "__main__":
    import sys

    print(export_photo(Path(sys.argv[1]), size=int(sys.argv[2]) if len(sys.argv) > 2 else 224))
