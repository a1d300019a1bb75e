"""Worker start-up: weights are checked before any work is taken."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import WorkerProcess


def test_a_worker_refuses_to_start_with_tampered_weights(env, weights_dir, tmp_path):
    # Given a copy of the weights whose ONNX file was altered after export
    source = Path(env.get("FB_WEIGHTS_DIR", weights_dir))
    copy = tmp_path / "weights"
    shutil.copytree(source, copy)
    with (copy / "model.onnx").open("ab") as f:
        f.write(b"\0tampered")
    # When a worker starts on them
    worker = WorkerProcess({**env, "FB_WEIGHTS_DIR": str(copy), "FB_CPU_BACKENDS": "onnx"}, name="tampered")
    # Then it exits before taking any work, saying which file and why
    with pytest.raises(RuntimeError) as failure:
        worker.start(timeout_s=120)
    assert "refusing to start" in str(failure.value) and "model.onnx" in str(failure.value)
    assert "sha256" in str(failure.value).lower()


def test_a_gpu_worker_without_cuda_stops_and_says_why(env):
    # Given this machine (no GPU) and a worker for the gpu pool
    worker = WorkerProcess({**env, "FB_WORKER_POOL": "gpu", "FB_GPU_BACKENDS": "onnx"}, queues="gpu", name="gpu")
    # When it starts, Then it stops itself rather than taking GPU jobs it cannot run, and the log says why
    try:
        worker.start(timeout_s=120)
    except RuntimeError:
        pass  # it may already be gone before it reports ready
    assert worker.proc.wait(60) is not None
    log = worker.log()
    assert "refusing to run" in log and "cuda" in log.lower()


def test_gpu_pool_configuration_builds_without_a_gpu(settings):
    from pipeline.broker import create_celery

    app = create_celery(settings)
    assert {q.name for q in app.conf.task_queues} == {"cpu", "gpu", "control", "callbacks"}
    assert "int8" not in settings.backends_for("gpu") and "int8" in settings.backends_for("cpu")
    assert app.conf.beat_schedule["benchmark-gpu"]["options"]["queue"] == "gpu"
