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
