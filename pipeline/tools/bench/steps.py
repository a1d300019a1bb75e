"""Where an image's time goes, step by step, on one core: decode, prepare, inference per backend; and the floor.

Measured in a fresh (spawned) process with one thread everywhere, on the benchmark's own photos:
- `bare_decode_ms`: Pillow's draft decode alone (the JPEG at the DCT scale the working size allows), the least
  any pipeline must spend reading a photo;
- `decode_ms`: what `prepare` spends before its own work (decode to numpy, near the size it works at);
- `prepare_ms`: the rest of `prepare` (the CNN's segmentation, crop, fit; the photo model's letterbox), on the
  decoded arrays;
- `infer_ms[backend]`: batched inference, in the model's inference batches, per image.
Each model's steps come from its preprocessing kind (pipeline/images/kinds.py).
The floor is 1 / (bare decode + INT8 inference): images per second per core with nothing but the unavoidable.
"""
from __future__ import annotations

import io
import math
import multiprocessing as mp
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

FLOOR_BACKEND = "int8"


@dataclass(frozen=True)
class StepTimes:
    images: int
    bare_decode_ms: float
    decode_ms: float
    prepare_ms: float
    infer_ms: dict[str, float]

    @property
    def floor_img_s_per_core(self) -> float | None:
        infer = self.infer_ms.get(FLOOR_BACKEND)
        return 1000 / (self.bare_decode_ms + infer) if infer else None

    def to_dict(self) -> dict:
        return {**asdict(self), "floor_img_s_per_core": self.floor_img_s_per_core}


def _best(fn, repeats: int) -> float:
    """The fastest of `repeats` timed runs of `fn()` (seconds): the least disturbed by anything else."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _bare_decode(data: bytes, box: int) -> object:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    w, h = img.size
    fit = min(box / w, box / h)
    if fit < 1 and img.format == "JPEG":
        img.draft("RGB", (max(1, math.ceil(w * fit)), max(1, math.ceil(h * fit))))  # as decode_image asks
    img.load()
    return img


def _measure(zip_path: str, weights_dir: str, backends: list[str], images: int, batch_size: int, repeats: int,
             out) -> None:
    # A fresh interpreter: one thread for OpenCV, ONNX Runtime and torch, nothing inherited.
    import numpy as np

    from pipeline.images.kinds import kind_of_config
    from pipeline.images.preprocess import to_batch, use_threads
    from pipeline.inference.backends import load_backend
    from pipeline.inference.manifest import load_manifest

    use_threads(1)
    manifest = load_manifest(Path(weights_dir))
    cfg = manifest.preprocess
    steps = kind_of_config(cfg).steps()
    decode_rgb, prepare_rgb = steps.decode_step, steps.prepare_step
    with zipfile.ZipFile(zip_path) as zf:
        datas = [zf.read(i) for i in zf.infolist() if not i.is_dir()][:images]

    rgbs = [decode_rgb(d, cfg) for d in datas]
    n = len(datas)
    bare = _best(lambda: [_bare_decode(d, steps.draft_side(cfg)) for d in datas], repeats)
    dec = _best(lambda: [decode_rgb(d, cfg) for d in datas], repeats)
    prep = _best(lambda: [prepare_rgb(r, cfg) for r in rgbs], repeats)
    batch = to_batch([prepare_rgb(r, cfg) for r in rgbs])
    batches = [np.ascontiguousarray(batch[i:i + batch_size]) for i in range(0, n, batch_size)]
    infer = {}
    for name in backends:
        backend = load_backend(name, manifest=manifest, threads=1)
        backend.predict(batches[0])  # warm-up: first calls allocate and pick kernels
        infer[name] = 1000 * _best(lambda: [backend.predict(b) for b in batches], repeats) / n
    out.put({**StepTimes(n, 1000 * bare / n, 1000 * dec / n, 1000 * prep / n, infer).to_dict(),
             "model": manifest.name, "batch_size": batch_size})


def measure_steps(zip_path: Path, weights_dir: Path, backends: list[str], *, images: int = 1500,
                  batch_size: int = 64, repeats: int = 3, timeout_s: float = 900) -> dict:
    """The per-step times of the first `images` photos of `zip_path` (best of `repeats`) for the model in the
    folder `weights_dir`, as a dict."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(str(zip_path), str(weights_dir), list(backends), images, batch_size,
                                              repeats, out), daemon=True)
    proc.start()
    try:
        return out.get(timeout=timeout_s)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def table(steps: dict) -> str:
    """The per-step table as text."""
    model = f"{steps['model']}: " if steps.get("model") else ""
    lines = [f"{model + 'step (one core, ' + str(steps['images']) + ' photos)':<44} {'ms per image':>12}",
             f"{'bare draft decode (Pillow, the floor)':<44} {steps['bare_decode_ms']:>12.3f}",
             f"{'decode + shrink to the working size':<44} {steps['decode_ms']:>12.3f}",
             f"{'prepare (segment/letterbox, fit)':<44} {steps['prepare_ms']:>12.3f}",
             f"{'decode + prepare':<44} {steps['decode_ms'] + steps['prepare_ms']:>12.3f}"]
    batch = steps.get("batch_size", 64)
    lines += [f"{'inference, ' + name + f', batches of {batch}':<44} {ms:>12.3f}" for name, ms in steps["infer_ms"].items()]
    if steps.get("floor_img_s_per_core"):
        lines.append(f"{'floor: 1 / (bare decode + int8)':<44} {steps['floor_img_s_per_core']:>9.1f} img/s per core")
    return "\n".join(lines)
