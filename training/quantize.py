"""Static INT8 post-training quantization with ONNX Runtime, choosing the format by measurement.

PyTorch's dynamic quantization leaves Conv2d in float, and nearly all of this network's work is in
convolutions, so we quantize statically (activations calibrated on training images). Which ONNX layout
is fastest depends on the CPU's integer kernels (AVX2 without VNNI here), so every candidate is
measured for accuracy and speed and the fastest one within `max_drop` of fp32 is kept.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES = [("QDQ", False), ("QDQ", True), ("QOperator", False), ("QOperator", True)]


class _Reader:
    """Feeds calibration batches to quantize_static."""

    def __init__(self, x: np.ndarray, batch: int = 100) -> None:
        self._batches = iter([{"input": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _session(path: Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def measure(path: Path, x: np.ndarray, y: np.ndarray, batch: int = 256, repeats: int = 5) -> dict[str, float]:
    """Accuracy on (x, y) and the best-of-`repeats` milliseconds per batch of `batch` on one thread."""
    sess = _session(path)
    pred = np.concatenate([sess.run(None, {"input": x[i:i + 1000]})[0].argmax(1) for i in range(0, len(x), 1000)])
    xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))
    sess.run(None, {"input": xb})  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"input": xb})
        times.append(time.perf_counter() - t0)
    return {"accuracy": round(float((pred == y).mean()), 4), "ms_per_batch": round(1000 * min(times), 2),
            "bytes": path.stat().st_size}


def quantize(fp32: Path, out: Path, calib: np.ndarray, fmt: str, per_channel: bool, tmp: Path) -> None:
    """One static quantization of `fp32` into `out` (uint8 activations, int8 weights, MinMax calibration)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / "pre.onnx"
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(out), _Reader(calib), quant_format=getattr(QuantFormat, fmt),
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def choose_int8(fp32: Path, out: Path, calib: np.ndarray, x: np.ndarray, y: np.ndarray, tmp: Path,
                quick: bool = False, max_drop: float = 0.003) -> dict[str, Any]:
    """Quantize every candidate, keep the fastest within `max_drop` of fp32 at `out`; return the comparison."""
    base = measure(fp32, x, y)
    results = []
    for fmt, per_channel in CANDIDATES[:1] if quick else CANDIDATES:
        path = tmp / f"{fmt}_{'pc' if per_channel else 'pt'}.onnx"
        quantize(fp32, path, calib, fmt, per_channel, tmp)
        results.append({"format": fmt, "per_channel": per_channel, **measure(path, x, y), "_path": path})
    ok = [r for r in results if r["accuracy"] >= base["accuracy"] - max_drop]
    best = min(ok, key=lambda r: r["ms_per_batch"]) if ok else max(results, key=lambda r: r["accuracy"])
    shutil.copyfile(best["_path"], out)
    table = [{k: v for k, v in r.items() if k != "_path"} for r in results]
    print("int8 candidates (batch 256, 1 thread):", table, "fp32:", base, flush=True)
    return {"format": best["format"], "per_channel": best["per_channel"], "calibration": "MinMax",
            "activation": "uint8", "weights": "int8", "fp32_onnx": base, "candidates": table,
            "measured_on": f"{len(y)} Fashion-MNIST test images"}
