"""Backend benchmarks on the weights' fixed sample: warm-up, repeated timed batches, accuracy.

Pure apart from the clock: loaded backends and the sample go in, one `BackendTiming` per backend comes out.
The periodic Celery task (workers/benchmark_task.py) stores them; `fashion-batch bench --history` shows them.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np

from pipeline.inference.manifest import Manifest, verified_path

REFERENCE = "eager"  # speedups are relative to the plain PyTorch model


@dataclass(frozen=True)
class BackendTiming:
    """One backend's figures; `error` is set (and the figures None) when it could not run."""

    backend: str
    batch_size: int
    repetitions: int
    median_ms: float | None = None
    p99_ms: float | None = None
    images_per_s: float | None = None
    speedup_vs_eager: float | None = None
    sample_accuracy: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_sample(manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """The manifest's sample (checksum verified) as the model's normalised (N, C, S, S) float32 batch, and labels.

    The sample holds images as its preprocessing's last uint8 step left them (raw Fashion-MNIST pixels; the
    photo model's letterboxed squares); they are normalised with the manifest's own constants.
    """
    from pipeline.images.kinds import kind_of_config

    with np.load(verified_path(manifest, "sample")) as data:
        images, labels = data["images"], data["labels"]
    x = kind_of_config(manifest.preprocess).sample_input(images, manifest.preprocess)
    return np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)


def fixed_batch(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first `batch_size` sample images, repeated if the sample is smaller."""
    reps = -(-batch_size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch_size]) if reps > 1 else x[:batch_size]


def accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Share of the sample `predict` labels correctly (a broken export shows up here, not in the timings)."""
    labels = np.concatenate([predict(x[i:i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)])
    return float((labels == y).mean())


def time_backend(name: str, predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, *,
                 batch_size: int, repetitions: int, warmup: int,
                 clock: Callable[[], float] = time.perf_counter) -> BackendTiming:
    """Warm up, then time `repetitions` predictions of one fixed batch; median and p99 per batch."""
    batch = fixed_batch(x, batch_size)
    for _ in range(warmup):
        predict(batch)  # first calls allocate buffers and pick kernels; they are not what we measure
    times = []
    for _ in range(repetitions):
        start = clock()
        predict(batch)
        times.append(clock() - start)
    median = float(np.median(times))
    return BackendTiming(
        backend=name, batch_size=len(batch), repetitions=repetitions, median_ms=median * 1000,
        p99_ms=float(np.percentile(times, 99)) * 1000, images_per_s=len(batch) / median if median > 0 else None,
        sample_accuracy=accuracy(predict, x, y, batch_size),
    )


def benchmark_backends(backends: Mapping[str, object], x: np.ndarray, y: np.ndarray, *, batch_size: int = 64,
                       repetitions: int = 15, warmup: int = 3) -> list[BackendTiming]:
    """Time every backend (objects with `.predict`); one that fails is reported with its error, not raised."""
    timings = []
    for name, backend in backends.items():
        try:
            timings.append(time_backend(name, backend.predict, x, y, batch_size=batch_size,
                                        repetitions=repetitions, warmup=warmup))
        except Exception as exc:  # noqa: BLE001 - a broken backend is a finding to record, not a crash
            timings.append(BackendTiming(name, batch_size, repetitions, error=f"{type(exc).__name__}: {exc}"[:500]))
    return with_speedups(timings)


def with_speedups(timings: list[BackendTiming]) -> list[BackendTiming]:
    """Fill `speedup_vs_eager` (None when the eager reference was not measured)."""
    ref = next((t.images_per_s for t in timings if t.backend == REFERENCE and t.images_per_s), None)
    return [
        BackendTiming(**{**t.to_dict(), "speedup_vs_eager": t.images_per_s / ref if ref and t.images_per_s else None})
        for t in timings
    ]
