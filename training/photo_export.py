"""Export the photo model to every backend, quantize it statically on photos, and write its manifest.

INT8: ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8 activations), calibrated on
training photos (MinMax), with and without the first convolution and the classifier kept in float; the candidate that agrees best with fp32 on the held-out photos
is kept (then the fastest among equals). Agreement with fp32, not ImageNet accuracy, is the measure.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.images.letterbox import LetterboxConfig, normalise
from pipeline.inference.backends import BACKENDS
from pipeline.inference.manifest import FORMAT, MANIFEST_NAME, file_entry
from training import data
from training.photo_data import fashion_squares
from training.quantize import _Reader, _session
from training.report import CLASSES

FILES = {"eager": "model.pt", "torchscript": "model.ts", "onnx": "model.onnx", "int8": "model.int8.onnx",
         "sample": "sample.npz"}
ONNX_OPSET = 18
SERVING = {"cpu": "int8", "gpu": "eager", "batch": 32}


def _inputs(squares: np.ndarray, cfg: LetterboxConfig) -> np.ndarray:
    return np.stack([normalise(s, cfg) for s in squares])


def export_graphs(model: torch.nn.Module, out: Path, size: int) -> None:
    """model.pt (state dict), model.ts (traced), model.onnx (dynamic batch; input 'input', output 'logits')."""
    model = model.eval().to(memory_format=torch.contiguous_format)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / FILES["eager"])
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, example).save(str(out / FILES["torchscript"]))
        from torch.export import Dim

        torch.onnx.export(model, (example,), str(out / FILES["onnx"]), input_names=["input"],
                          output_names=["logits"], dynamic_shapes={"inputs": {0: Dim("batch")}},
                          opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False)


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    sess = _session(path)
    sess.run(None, {"input": x[:8]})
    t = time.perf_counter()
    logits = np.concatenate([sess.run(None, {"input": x[i:i + 32]})[0] for i in range(0, len(x), 32)])
    return logits, 1000 * (time.perf_counter() - t) / len(x)


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray, check: tuple[np.ndarray, np.ndarray],
                  quick: bool = False) -> dict[str, Any]:
    """Try the static INT8 candidates; keep the best agreement with fp32 on `check` at `out`; the comparison."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x, y = check
    base_logits, base_ms = _run(fp32, x)
    base_pred = base_logits.argmax(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        nodes = onnx.load(str(pre)).graph.node
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        gemms = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
        # Entropy and Percentile calibration build activation histograms: over an hour here on 2 cores, so
        # MinMax only (with the first convolution and the classifier in float it agreed with fp32 on 97%).
        methods = ["MinMax"]
        for method in methods:
            for keep in ([False] if quick else [False, True]):
                path = Path(tmp) / f"{method}-{keep}.onnx"
                excluded = (convs[:1] + gemms) if keep else []
                extra = {"CalibPercentile": 99.99} if method == "Percentile" else {}
                quantize_static(str(pre), str(path), _Reader(calib, batch=16), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=excluded,
                                extra_options=extra)
                logits, ms = _run(path, x)
                pred = logits.argmax(1)
                r = {"calibration": method, "float_first_conv_and_head": keep,
                     "agreement_with_fp32": round(float((pred == base_pred).mean()), 4),
                     "accuracy": round(float((pred == y).mean()), 4), "ms_per_image": round(ms, 2),
                     "bytes": path.stat().st_size, "_path": path}
                print("int8 candidate:", {k: v for k, v in r.items() if k != "_path"}, flush=True)
                results.append(r)
        best = max(results, key=lambda r: (r["agreement_with_fp32"], r["accuracy"], -r["ms_per_image"]))
        shutil.copyfile(best["_path"], out)
    return {"format": "QDQ", "per_channel": True, "activation": "uint8", "weights": "int8",
            "chosen": {k: v for k, v in best.items() if k != "_path"},
            "fp32_onnx": {"accuracy": round(float((base_pred == y).mean()), 4), "ms_per_image": round(base_ms, 2),
                          "bytes": fp32.stat().st_size},
            "candidates": [{k: v for k, v in r.items() if k != "_path"} for r in results],
            "calibrated_on": f"{len(calib)} realphoto-train training photos (augmented variants included)",
            "measured_on": f"{len(y)} held-out realphoto-train photos, 1 thread, batch 32"}


def backend_accuracy(out: Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of every backend's file on (x, y), each checked against the manifest's checksum first."""
    from pipeline.inference.efficientnet import build
    from pipeline.inference.manifest import sha256_file

    raw = json.loads((out / MANIFEST_NAME).read_text())
    acc = {}
    for name in BACKENDS:
        path = out / raw["files"][name]["path"]
        if sha256_file(path) != raw["files"][name]["sha256"]:
            raise RuntimeError(f"{path} does not match the manifest just written")
        if name in ("onnx", "int8"):
            logits = _run(path, x)[0]
        else:
            if name == "eager":
                module = build(**raw["arch"]["args"])
                module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            else:
                module = torch.jit.load(str(path))
            with torch.inference_mode():
                logits = np.concatenate([module.eval()(torch.from_numpy(x[i:i + 32])).numpy()
                                         for i in range(0, len(x), 32)])
        acc[name] = round(float((logits.argmax(1) == y).mean()), 4)
    return acc


def export_photo(model: torch.nn.Module, arch: dict[str, Any], out: Path, cfg: LetterboxConfig,
                 calib: np.ndarray, held: tuple[np.ndarray, np.ndarray], training: dict[str, Any],
                 results: dict[str, Any], quick: bool = False, data_dir: Path | None = None) -> dict[str, Any]:
    """Write the four backends, sample.npz and manifest.json into `out`; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    export_graphs(model, out, cfg.size)
    rng = np.random.default_rng(0)
    calib_x = _inputs(calib[rng.choice(len(calib), min(len(calib), 16 if quick else 256), replace=False)], cfg)
    held_x = _inputs(held[0], cfg)
    int8 = quantize_int8(out / FILES["onnx"], out / FILES["int8"], calib_x, (held_x, held[1]), quick=quick)
    # The sample (benchmarks, tests) is Fashion-MNIST test images rendered as photos: shippable, unlike photos.
    t_images, t_labels = data.load_split("test", data_dir)
    sq, lab = fashion_squares(t_images, t_labels, 2 if quick else 8, cfg, seed=2024, rendered=True)
    np.savez_compressed(out / FILES["sample"], images=sq, labels=lab)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": "photo",
        "arch": arch,
        "classes": list(CLASSES),
        "preprocess": cfg.to_dict(),
        "serving": SERVING,
        "files": {k: file_entry(out, out / v) for k, v in FILES.items()},
        "calibration": {"method": "temperature", "temperature": training.get("temperature"), "folded": True,
                        "fitted_on": "held-out realphoto-train photos"},
        "accuracy": {},
        "selection": results,
        "int8": int8,
        "training": training,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["accuracy"] = {"realphoto_train_heldout": backend_accuracy(out, held_x, held[1])}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["accuracy"]), flush=True)
    return manifest
