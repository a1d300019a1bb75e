"""The benchmark harness on a handful of images: the tight-loop limit, and one whole run on a private stack."""
from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.tools.bench import run as bench
from pipeline.tools.bench.limit import measure_limit
from pipeline.tools.bench.steps import measure_steps, table


def tiny_fashion(root: Path, n: int = 30) -> Path:
    """A Fashion-MNIST-shaped test split of `n` bright blobs (IDX gz files), classes in turn."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        h, w = 8 + (i % 10), 20 - (i % 10)
        images[i, 4:4 + h, 4:4 + w] = rng.integers(120, 256)
    labels = (np.arange(n) % 10).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for name, arr, magic in (("t10k-images-idx3-ubyte.gz", images, 2051), ("t10k-labels-idx1-ubyte.gz", labels, 2049)):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        (root / name).write_bytes(gzip.compress(header + arr.tobytes()))
    return root


def test_photos_are_rendered_once_and_the_limit_covers_every_image(settings, tmp_path):
    # Given a small test split rendered as a photo ZIP
    data = tiny_fashion(tmp_path / "fm")
    path, labels = bench.photo_zip(12, tmp_path / "out", data_dir=data)
    again, _ = bench.photo_zip(12, tmp_path / "out", data_dir=data)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    # Then it holds 12 JPEGs named by class, labelled in order, and a second call reuses the file
    assert len(names) == 12 and all(n.endswith(".jpg") for n in names) and labels == [i % 10 for i in range(12)]
    assert again == path and path.stat().st_mtime == again.stat().st_mtime
    # When the tight loop runs on two processes
    result = measure_limit(path, "onnx", settings.weights_dir / "fmnist", processes=2, batch_size=4)
    # Then every image went through both the full loop and the inference-only pass
    assert result.images == 12 and result.processes == 2
    assert result.img_s > 0 and result.infer_img_s > result.img_s
    assert result.prepare_ms_per_image > 0 and result.infer_ms_per_image > 0


@pytest.mark.parametrize("model", ["fmnist", "photo"])
def test_the_step_table_times_every_step_and_derives_the_floor(settings, tmp_path, model):
    # Given a few rendered photos
    path, _ = bench.photo_zip(20, tmp_path / "out", data_dir=tiny_fashion(tmp_path / "fm"))
    # When the steps of a model (its own preprocessing) are timed on one core
    steps = measure_steps(path, settings.weights_dir / model, ["onnx", "int8"], images=16, batch_size=8, repeats=1)
    # Then every step has a time, and the floor is bare decode plus INT8 inference
    assert steps["images"] == 16
    assert all(steps[k] > 0 for k in ("bare_decode_ms", "decode_ms", "prepare_ms"))
    assert set(steps["infer_ms"]) == {"onnx", "int8"} and all(v > 0 for v in steps["infer_ms"].values())
    assert steps["floor_img_s_per_core"] == pytest.approx(1000 / (steps["bare_decode_ms"] + steps["infer_ms"]["int8"]))
    assert "floor" in table(steps) and "inference, int8" in table(steps)


@pytest.mark.slow
def test_a_whole_run_on_a_private_stack_writes_every_figure(settings, tmp_path, monkeypatch):
    # Given the test settings' weights, and a tiny data set
    data = tiny_fashion(tmp_path / "fm")
    monkeypatch.setenv("FB_WEIGHTS_DIR", str(settings.weights_dir))
    monkeypatch.setenv("FB_CPU_BACKENDS", "onnx")  # the stack's workers skip loading torch: a quicker start
    out = tmp_path / "bench.json"
    # When a small benchmark runs end to end
    code = bench.main(["--images", "24", "--processes", "1", "--limit-backends", "onnx", "--baseline-images", "6",
                       "--chunk-size", "8", "--first-chunk-size", "4", "--data-dir", str(data), "--step-images", "8",
                       "--out-dir", str(tmp_path / "cache"), "--json", str(out),
                       "--no-wait-quiet"])  # a test checks the figures exist, not how good they are
    # Then it succeeds and the JSON carries the headline figures (the default model's) and the per-backend ones
    assert code == 0
    report = json.loads(out.read_text())
    assert report["model"] == "photo" and list(report["models"]) == ["photo", "fmnist"]
    for mr in report["models"].values():  # each model's pipeline against its own limit
        assert mr["pipeline"]["status"] == "succeeded" and mr["ratio_pipeline_to_limit"] > 0
        assert mr["steps"]["model"] == mr["model"]
    for key in ("limit_img_s", "pipeline_img_s", "baseline_img_s", "first_result_s", "worker_rss_mb",
                "ratio_pipeline_to_limit", "chunk_p50_s", "chunk_p99_s"):
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["pipeline"]["images"] == 24 and report["pipeline"]["status"] == "succeeded"
    assert report["pipeline"]["chunks"] == 4  # 4, then 8, 8 and 4
    assert report["baseline"]["images"] == 6
    assert set(report["backends"]) == {"onnx"} and report["backends"]["onnx"]["infer_img_s"] > 0
    # and the per-step table, with the pipeline against the floor
    assert report["steps"]["images"] == 8 and report["ratio_pipeline_to_floor"] > 0
    assert report["pipeline_img_s_per_core"] == pytest.approx(report["pipeline_img_s"])  # one process

