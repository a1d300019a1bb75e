"""The machine's limit for this workload: decode, preprocess and batched inference in a tight loop.

One process per core, one inference thread each, no queue, no database: the most a pipeline on these cores
could do. Each process reads its share of the images into memory first, then all start together.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LimitResult:
    """Throughput of `processes` processes on `images` images with one backend."""

    backend: str
    processes: int
    images: int
    img_s: float  # decode + preprocess + inference, all processes together
    infer_img_s: float  # inference alone on the prepared batches, all processes together
    prepare_ms_per_image: float  # decode + preprocess, per image, in one process
    infer_ms_per_image: float  # batched inference, per image, in one process


def _share(members: int, processes: int, rank: int) -> range:
    return range(rank, members, processes)


def _proc(zip_path: str, rank: int, processes: int, backend_name: str, weights_dir: str, batch_size: int,
          max_pixels: int, barrier, results) -> None:
    # Runs in a fresh (spawned) process: loads its own model, so nothing is shared but the start signal.
    from pipeline.images.kinds import kind_of_config
    from pipeline.images.preprocess import to_batch
    from pipeline.inference.backends import load_backend
    from pipeline.inference.manifest import load_manifest

    manifest = load_manifest(Path(weights_dir))
    cfg = manifest.preprocess
    prepare = kind_of_config(cfg).prepare  # the model's own preprocessing
    backend = load_backend(backend_name, manifest=manifest, threads=1)
    with zipfile.ZipFile(zip_path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        datas = [zf.read(infos[i]) for i in _share(len(infos), processes, rank)]
    backend.predict(to_batch([prepare(d, cfg, max_pixels=max_pixels) for d in datas[:batch_size]]))  # warm-up
    barrier.wait()
    start, prep_s, infer_s, batches = time.time(), 0.0, 0.0, []
    for i in range(0, len(datas), batch_size):
        t0 = time.perf_counter()
        batch = to_batch([prepare(d, cfg, max_pixels=max_pixels) for d in datas[i:i + batch_size]])
        t1 = time.perf_counter()
        backend.predict(batch)
        infer_s += time.perf_counter() - t1
        prep_s += t1 - t0
        batches.append(batch)
    end = time.time()
    barrier.wait()
    infer_start = time.time()
    for batch in batches:
        backend.predict(batch)
    results.put({"rank": rank, "n": len(datas), "start": start, "end": end, "prep_s": prep_s, "infer_s": infer_s,
                 "infer_start": infer_start, "infer_end": time.time()})


def measure_limit(zip_path: Path, backend: str, weights_dir: Path, *, processes: int | None = None,
                  batch_size: int = 256, max_pixels: int = 50_000_000, timeout_s: float = 1800) -> LimitResult:
    """Run the tight loop over every image in `zip_path` with `processes` processes (default: one per core), for the
    model in the folder `weights_dir` (weights/<model>/)."""
    processes = processes or os.cpu_count() or 1
    ctx = mp.get_context("spawn")  # fresh interpreters: no inherited threads, models or sockets
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_proc, args=(str(zip_path), r, processes, backend, str(weights_dir), batch_size,
                                             max_pixels, barrier, results), daemon=True)
             for r in range(processes)]
    for p in procs:
        p.start()
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < processes:
            try:
                out.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the limit run for {backend} failed (exit codes {dead}) or timed out") from None
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    n = sum(o["n"] for o in out)
    span = max(o["end"] for o in out) - min(o["start"] for o in out)
    infer_span = max(o["infer_end"] for o in out) - min(o["infer_start"] for o in out)
    return LimitResult(
        backend=backend, processes=processes, images=n, img_s=n / span, infer_img_s=n / infer_span,
        prepare_ms_per_image=1000 * sum(o["prep_s"] for o in out) / n,
        infer_ms_per_image=1000 * sum(o["infer_s"] for o in out) / n,
    )
