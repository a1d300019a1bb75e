"""Backend benchmark timing: warm-up is not timed, median/p99 per batch, accuracy, speedups, failures."""
from __future__ import annotations

import itertools

import numpy as np

from pipeline.inference.benchmark import benchmark_backends, load_sample, time_backend
from pipeline.inference.manifest import load_manifest


class Oracle:
    """A 'backend' that knows the labels of the batch it is given (by its first pixel) and counts its calls."""

    def __init__(self):
        self.calls = 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        labels = batch[:, 0, 0, 0].astype(int)
        return np.eye(10, dtype=np.float32)[labels]


def sample(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 10
    x = np.zeros((n, 1, 28, 28), np.float32)
    x[:, 0, 0, 0] = y
    return x, y


def test_warm_up_is_not_timed_and_the_batch_is_padded_to_size():
    # Given a clock that advances 10 ms per reading pair, and a sample smaller than the batch size
    ticks = itertools.count()
    clock = lambda: next(ticks) * 0.010  # noqa: E731
    oracle, (x, y) = Oracle(), sample(10)
    # When the backend is timed with 2 warm-up calls and 5 repetitions
    t = time_backend("onnx", oracle.predict, x, y, batch_size=32, repetitions=5, warmup=2, clock=clock)
    # Then only the repetitions were timed (10 ms each), on a full batch of 32
    assert t.batch_size == 32 and t.repetitions == 5
    assert abs(t.median_ms - 10.0) < 1e-6 and abs(t.p99_ms - 10.0) < 1e-6
    assert abs(t.images_per_s - 3200.0) < 1e-3
    # And it predicted 2 + 5 timed batches plus one pass for the accuracy, which is perfect here
    assert oracle.calls == 2 + 5 + 1
    assert t.sample_accuracy == 1.0


def test_speedups_are_relative_to_eager_and_a_broken_backend_is_reported_not_raised():
    # Given an eager reference, a second backend, and one that raises
    class Broken:
        def predict(self, batch):
            raise RuntimeError("bad export")

    x, y = sample(20)
    backends = {"eager": Oracle(), "onnx": Oracle(), "int8": Broken()}
    # When they are benchmarked
    timings = {t.backend: t for t in benchmark_backends(backends, x, y, batch_size=8, repetitions=3, warmup=1)}
    # Then eager's speedup is 1, the others' are ratios, and the broken one carries its error
    assert timings["eager"].speedup_vs_eager == 1.0
    assert timings["onnx"].speedup_vs_eager is not None and timings["onnx"].speedup_vs_eager > 0
    assert timings["int8"].error == "RuntimeError: bad export"
    assert timings["int8"].images_per_s is None and timings["int8"].speedup_vs_eager is None


def test_the_sample_is_normalized_as_in_training(exported_weights):
    # Given exported weights with a raw uint8 sample
    from training.data import to_tensor_input

    manifest = load_manifest(exported_weights)
    raw = np.load(exported_weights / "sample.npz")
    # When it is loaded for benchmarking
    x, y = load_sample(manifest)
    # Then it is the network's input for those images, with their labels
    assert x.shape == (len(raw["labels"]), 1, 28, 28) and x.dtype == np.float32
    assert np.allclose(x, to_tensor_input(raw["images"]), atol=1e-5)
    assert (y == raw["labels"]).all()


def test_the_photo_sample_is_normalised_with_its_manifest(exported_photo):
    # Given a photo model whose sample holds letterboxed uint8 squares (N, S, S, 3)
    manifest = load_manifest(exported_photo)
    raw = np.load(exported_photo / "sample.npz")
    # When it is loaded for benchmarking
    x, y = load_sample(manifest)
    # Then it is the (N, 3, S, S) network input: channels first, (x/255 - mean) / std
    cfg = manifest.preprocess
    expected = (raw["images"].astype(np.float32) / 255 - cfg.mean) / cfg.std
    assert x.shape == (len(y), 3, cfg.size, cfg.size)
    assert np.allclose(x, expected.transpose(0, 3, 1, 2), atol=1e-5) and (y == raw["labels"]).all()
